// bench/auth.lua's mailauth side (postalsys/mailauth, from npm): the same
// message through authenticate() (SPF, DKIM, ARC, DMARC) N times, DNS
// answered from the JSON map given (a warm cache). Prints CPU
// microseconds per message.
//   node auth_mailauth.js RECORDS.json MESSAGE N
const fs = require("fs");
const { authenticate } = require("mailauth");
const records = JSON.parse(fs.readFileSync(process.argv[2]));
const message = fs.readFileSync(process.argv[3]);
const n = parseInt(process.argv[4], 10);

async function resolver(name, rr) {
  const v = records[name.replace(/\.$/, "") + " " + rr];
  if (v === undefined) {
    const e = new Error("ENOTFOUND");
    e.code = "ENOTFOUND";
    throw e;
  }
  if (rr === "TXT") return [[v]];
  return [v];
}

async function once() {
  const r = await authenticate(message, {
    ip: "192.0.2.1", helo: "mail.example.com", mta: "mx.example.org",
    sender: "alice@example.com", resolver,
  });
  if (r.spf.status.result !== "pass" || r.dmarc.status.result !== "pass")
    throw new Error("not a pass: " + r.headers);
  return r;
}

(async () => {
  await once();
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await once();
  const u = process.cpuUsage(t0);
  console.log(((u.user + u.system) / n).toFixed(1));
})().catch((e) => { console.error(e); process.exit(1); });
