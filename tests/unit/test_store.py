"""The SQLite store keeps every record across reopen and refuses duplicate names."""

from smlocal.service.store import Store


def test_records_survive_reopen(tmp_path):
    path = tmp_path / "state.sqlite3"
    store = Store(path)
    assert store.insert("TrainingJob", "a", {"n": 1})
    assert not store.insert("TrainingJob", "a", {"n": 2})
    store.update("TrainingJob", "a", lambda d: d.update(n=3))
    store.put("Model", "m", {"x": [1, 2]})
    store.close()
    again = Store(path)
    assert again.get("TrainingJob", "a") == {"n": 3}
    assert again.get("Model", "m") == {"x": [1, 2]}
    assert [d["n"] for d in again.all("TrainingJob")] == [3]
    assert again.delete("Model", "m") and again.get("Model", "m") is None


def test_returned_documents_are_copies(tmp_path):
    store = Store(tmp_path / "s.db")
    store.insert("K", "a", {"list": [1]})
    doc = store.get("K", "a")
    doc["list"].append(2)
    assert store.get("K", "a") == {"list": [1]}
