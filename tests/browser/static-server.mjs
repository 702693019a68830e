// A tiny static file server for dist/ (tests and local use). Binds 127.0.0.1 only.
// Usage as a module: const srv = await serveDir(dir, {port: 0}); ... await srv.close();
// Usage from the shell: node tests/browser/static-server.mjs DIR [PORT]

import { createServer } from "node:http";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const MIME_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".safetensors": "application/octet-stream",
  ".bin": "application/octet-stream",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".bmp": "image/bmp",
  ".ico": "image/x-icon",
};

// mounts: {"/prefix/": dir} serves other directories under a path prefix (tests put course
// pages with the widget next to the app this way).
export async function serveDir(root, { port = 0, host = "127.0.0.1", log = null, mounts = {} } = {}) {
  const roots = Object.entries(mounts).map(([prefix, dir]) => [prefix, path.resolve(dir)]);
  const server = createServer(async (req, res) => {
    const send = (status, body) => {
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
      res.end(body);
      log?.(`${status} ${req.method} ${req.url}`);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "method not allowed\n");
    let rel;
    try {
      rel = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
    } catch {
      return send(400, "bad request\n");
    }
    if (rel.endsWith("/")) rel += "index.html";
    let base = path.resolve(root);
    for (const [prefix, dir] of roots) {
      if (rel.startsWith(prefix)) {
        base = dir;
        rel = "/" + rel.slice(prefix.length);
        break;
      }
    }
    const file = path.resolve(base, "." + rel);
    if (file !== base && !file.startsWith(base + path.sep)) return send(403, "forbidden\n");
    let info;
    try {
      info = await stat(file);
    } catch {
      return send(404, "not found\n");
    }
    if (!info.isFile()) return send(404, "not found\n");
    res.writeHead(200, {
      "content-type": MIME_TYPES[path.extname(file).toLowerCase()] || "application/octet-stream",
      "content-length": info.size,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
    });
    log?.(`200 ${req.method} ${req.url}`);
    if (req.method === "HEAD") return res.end();
    createReadStream(file).pipe(res);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const { port: actualPort } = server.address();
  return {
    server,
    port: actualPort,
    origin: `http://${host}:${actualPort}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const dir = process.argv[2] || "dist";
  const port = Number(process.argv[3] || process.env.PORT || 8080);
  const srv = await serveDir(dir, { port, log: (line) => console.log(line) });
  console.log(`serving ${path.resolve(dir)} at ${srv.origin}/`);
}
