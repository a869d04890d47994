// Helpers shared by the registry and experiments pages (pure DOM building on dom.js's h(); text only).
import { h, errorBox as domErrorBox } from '../dom.js';

/** The registry's and experiments' stylesheet (for dom.js's useStyle). */
export const MLOPS_CSS = new URL('./mlops.css', import.meta.url).href;

export function link(href, text) {
  return h('a', { href }, text);
}

/** An error shown plainly (dom.js's box: the AWS error code and message, as text), after ``prefix``. */
export function errorBox(err, prefix) {
  return prefix ? h('div', {}, `${prefix}:`, domErrorBox(err)) : domErrorBox(err);
}

/** ``fn`` over ``items`` with at most ``limit`` calls in flight; results in order. */
export async function mapLimit(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next;
      next += 1;
      results[index] = await fn(items[index], index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

