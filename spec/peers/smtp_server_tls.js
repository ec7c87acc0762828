// A TLS + AUTH upstream for the relay specs: nodemailer's smtp-server with
// `secure` (implicit TLS) or STARTTLS, and an onAuth that takes relay/pw.
// Usage: node smtp_server_tls.js starttls|implicit PORT CERT KEY OUTFILE
"use strict";
const fs = require("fs");
const { SMTPServer } = require("smtp-server");

const [mode, port, cert, key, out] = process.argv.slice(2);
const server = new SMTPServer({
  secure: mode === "implicit",
  key: fs.readFileSync(key),
  cert: fs.readFileSync(cert),
  authMethods: ["PLAIN", "LOGIN"],
  logger: false,
  disableReverseLookup: true,
  onAuth(auth, session, callback) {
    if (auth.username === "relay" && auth.password === "pw") {
      callback(null, { user: auth.username });
    } else {
      callback(new Error("Invalid username or password"));
    }
  },
  onData(stream, session, callback) {
    let data = "";
    stream.on("data", (chunk) => { data += chunk; });
    stream.on("end", () => {
      fs.appendFileSync(out, JSON.stringify({
        from: session.envelope.mailFrom.address,
        to: session.envelope.rcptTo.map((r) => r.address),
        user: session.user, tls: session.secure, data,
      }) + "\n");
      callback();
    });
  },
});
server.on("error", (err) => { console.error("smtp-server:", err.message); });
server.listen(Number(port), "127.0.0.1", () => console.log("ready"));
