// A small WebSocket test client over Node's built-in WebSocket: queues every
// server message so tests can wait for the next one matching a predicate.
export async function openSocket(url, { hello = true, lastSeq } = {}) {
  const ws = new WebSocket(url);
  const inbox = [];
  const waiters = [];
  let closed = null;
  let onClosed;
  const closedEvent = new Promise((r) => { onClosed = r; });
  ws.addEventListener("message", (ev) => {
    const msg = JSON.parse(ev.data);
    inbox.push(msg);
    for (const w of [...waiters]) w();
  });
  ws.addEventListener("close", (ev) => { closed = { code: ev.code, reason: ev.reason }; onClosed(closed); for (const w of [...waiters]) w(); });
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve, { once: true });
    ws.addEventListener("error", () => reject(new Error(`cannot open ${url}`)), { once: true });
  });
  const client = {
    ws,
    inbox,
    get closed() { return closed; },
    send(msg) { ws.send(JSON.stringify(msg)); },
    /** Resolve with (and consume up to) the first queued message matching `pred`. */
    next(pred = () => true, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const i = inbox.findIndex(pred);
          if (i >= 0) {
            const [m] = inbox.splice(0, i + 1).slice(-1);
            cleanup();
            resolve(m);
          } else if (closed && !inbox.length) {
            cleanup();
            reject(new Error(`socket closed (${closed.code} ${closed.reason}) while waiting`));
          }
        };
        const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out; inbox: ${JSON.stringify(inbox).slice(0, 500)}`)); }, timeoutMs);
        const cleanup = () => { clearTimeout(timer); const k = waiters.indexOf(check); if (k >= 0) waiters.splice(k, 1); };
        waiters.push(check);
        check();
      });
    },
    /** Collect `event` messages until `n` arrived. */
    async events(n, timeoutMs = 5000) {
      const out = [];
      while (out.length < n) out.push(await client.next((m) => m.type === "event", timeoutMs));
      return out;
    },
    /** Resolve with {code, reason} once the socket has closed (from either side); reject after `timeoutMs`. */
    closedWithin(timeoutMs = 5000) {
      let timer;
      const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs); });
      return Promise.race([closedEvent, timeout]).finally(() => clearTimeout(timer));
    },
    close() { return new Promise((r) => { if (closed) return r(); ws.addEventListener("close", r, { once: true }); ws.close(); }); },
  };
  if (hello) client.send(lastSeq === undefined ? { type: "hello" } : { type: "hello", last_seq: lastSeq });
  return client;
}
