// A raw WebSocket client over a TCP socket: sends frames byte for byte (e.g.
// a text frame holding invalid UTF-8, which no WebSocket API lets you send)
// and collects the server's text frames and close code.
import net from "node:net";
import { randomBytes } from "node:crypto";

export function rawSocket(base, path) {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname);
    const texts = [];
    let close = null;
    let buf = Buffer.alloc(0);
    let upgraded = false;
    sock.setTimeout(10_000, () => sock.destroy());
    sock.on("error", (e) => { if (!upgraded) reject(e); });
    sock.on("close", () => { if (!upgraded) reject(new Error("closed before upgrade")); close ??= { code: 1006 }; });
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString();
        buf = buf.subarray(end + 4);
        if (!/^HTTP\/1\.1 101/.test(head)) { sock.destroy(); return reject(new Error(head.split("\r\n")[0])); }
        upgraded = true;
        resolve(api);
      }
      // Parse server frames (unmasked).
      for (;;) {
        if (buf.length < 2) return;
        const op = buf[0] & 0x0f;
        let len = buf[1] & 0x7f, off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (op === 1) texts.push(JSON.parse(payload.toString()));
        else if (op === 8) close = { code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005 };
      }
    });
    const api = {
      texts,
      get closed() { return close; },
      /** Send one masked frame with `opcode` (1 text, 2 binary, 8 close) and raw `payload` bytes. */
      frame(opcode, payload) {
        const mask = randomBytes(4);
        const len = payload.length;
        const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len])
          : Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 126]), Buffer.from([len >> 8, len & 255])]);
        const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
        sock.write(Buffer.concat([head, mask, body]));
      },
      text(s) { api.frame(1, Buffer.from(s)); },
      /** Wait until a text frame matches or the socket closes; resolves with it or null. */
      async until(pred, ms = 5000) {
        const end = Date.now() + ms;
        while (Date.now() < end) {
          const hit = texts.find(pred);
          if (hit) return hit;
          if (close) return null;
          await new Promise((r) => setTimeout(r, 20));
        }
        return null;
      },
      destroy() { sock.destroy(); },
    };
    sock.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  });
}
