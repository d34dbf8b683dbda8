// Preloaded into the MCP conformance suite (`node --import`) for the run through mxgate with a
// real login: the suite (0.1.16) has no option to add headers, so this puts
// `Authorization: Bearer $MXGATE_CONFORMANCE_BEARER` on every HTTP request the process sends to
// $MXGATE_CONFORMANCE_ORIGIN. Both the MCP SDK's `fetch` and the `undici.request` calls of the
// dns-rebinding scenario go through undici's global dispatcher, which is replaced here by one
// that adds the header. A request that already has an Authorization header keeps it.
import { Agent, setGlobalDispatcher } from 'undici';

const token = process.env.MXGATE_CONFORMANCE_BEARER;
const origin = process.env.MXGATE_CONFORMANCE_ORIGIN;
if (!token || !origin) {
  throw new Error('bearer.mjs needs MXGATE_CONFORMANCE_BEARER and MXGATE_CONFORMANCE_ORIGIN');
}

// Dispatch options carry headers as an object, a flat [name, value, ...] array or an iterable
// of pairs, depending on the caller; this returns a list of [name, value] pairs.
function headerPairs(headers) {
  if (headers == null) return [];
  if (Array.isArray(headers)) {
    if (headers.length === 0 || Array.isArray(headers[0])) return headers.map(([k, v]) => [k, v]);
    const pairs = [];
    for (let i = 0; i < headers.length; i += 2) pairs.push([headers[i], headers[i + 1]]);
    return pairs;
  }
  if (typeof headers[Symbol.iterator] === 'function') return [...headers].map(([k, v]) => [k, v]);
  return Object.entries(headers);
}

const withBearer = (dispatch) => (opts, handler) => {
  if (String(opts.origin) !== origin) return dispatch(opts, handler);
  const pairs = headerPairs(opts.headers);
  if (!pairs.some(([name]) => String(name).toLowerCase() === 'authorization')) {
    pairs.push(['authorization', `Bearer ${token}`]);
  }
  return dispatch({ ...opts, headers: pairs.flat() }, handler);
};

setGlobalDispatcher(new Agent().compose(withBearer));
