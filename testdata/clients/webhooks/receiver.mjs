// A webhook receiver that checks every delivery with the Standard Webhooks
// reference library, as a CRM would. Run by clients/clients_test.go:
//
//   node receiver.mjs PORT
//
// POST /secret  (body: whsec_…) replaces the secrets it accepts (during a
//               rotation, the test gives it the new secret alone: every
//               delivery then carries a signature under it)
// GET  /stats   {"ok", "bad", "unique", "ids", "errors"}
// anything else is a delivery: 204 when it verifies, 400 otherwise.
import http from "node:http";
import { Webhook } from "standardwebhooks";

const port = Number(process.argv[2] || 0);
let secrets = [];
const ids = new Map(); // webhook-id -> type
const errors = [];
let ok = 0;
let bad = 0;

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    if (req.method === "POST" && req.url === "/secret") {
      secrets = [body.trim()];
      res.end("ok");
      return;
    }
    if (req.method === "GET" && req.url === "/stats") {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ ok, bad, unique: ids.size, ids: Object.fromEntries(ids), errors: errors.slice(0, 10) }));
      return;
    }
    let payload = null;
    let lastErr = "no secret configured";
    for (const s of secrets) {
      try {
        payload = new Webhook(s).verify(body, req.headers);
        break;
      } catch (e) {
        lastErr = String(e && e.message ? e.message : e);
      }
    }
    if (payload === null) {
      bad++;
      errors.push(`${req.headers["webhook-id"]}: ${lastErr}`);
      res.statusCode = 400;
      res.end();
      return;
    }
    ok++;
    ids.set(req.headers["webhook-id"], payload.type);
    res.statusCode = 204;
    res.end();
  });
});
server.listen(port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
