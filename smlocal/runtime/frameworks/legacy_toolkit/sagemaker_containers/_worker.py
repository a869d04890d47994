"""The response object a serving script's ``output_fn`` may return."""

from __future__ import annotations

from http import HTTPStatus

from sagemaker_containers import _content_types


class Response:
    """An HTTP response: body, status, Content-Type (what Flask makes of it on the image).

    Args:
        response: The body (str or bytes).
        accept: The client's Accept: the Content-Type, unless ``*/*``.
        status: The HTTP status (200).
        headers: More headers.
        mimetype: The Content-Type when ``accept`` does not give one.
    """

    def __init__(self, response=None, accept=None, status=HTTPStatus.OK, headers=None, mimetype=None,
                 direct_passthrough=False):
        del direct_passthrough
        self.headers = dict(headers or {})
        if accept and accept != _content_types.ANY:
            self.headers["Content-Type"] = accept
        self.mimetype = mimetype or self.headers.get("Content-Type") or "text/html"
        self.content_type = self.headers.get("Content-Type", self.mimetype)
        self.status_code = int(status)
        body = b"" if response is None else response
        self._data = body.encode("utf-8") if isinstance(body, str) else bytes(body)

    def get_data(self, as_text=False):
        """The body (bytes, or str with ``as_text``)."""
        return self._data.decode("utf-8") if as_text else self._data
