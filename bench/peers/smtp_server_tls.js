// TLS peer of the bench: nodemailer's smtp-server with STARTTLS and an
// onAuth that takes bench/bench; it consumes and counts each message.
// Usage: node smtp_server_tls.js PORT CERT KEY (NODE_PATH: smtp-server)
"use strict";
const fs = require("fs");
const { SMTPServer } = require("smtp-server");

const [port, cert, key] = process.argv.slice(2);
let count = 0;
const server = new SMTPServer({
  key: fs.readFileSync(key),
  cert: fs.readFileSync(cert),
  authMethods: ["PLAIN"],
  disableReverseLookup: true,
  logger: false,
  size: 0,
  onAuth(auth, session, callback) {
    if (auth.username === "bench" && auth.password === "bench") {
      callback(null, { user: auth.username });
    } else {
      callback(new Error("Invalid username or password"));
    }
  },
  onData(stream, session, callback) {
    stream.on("data", () => {});
    stream.on("end", () => { count++; callback(); });
  },
});
server.server.on("connection", (socket) => socket.setNoDelay(true));
server.on("error", (err) => { console.error("smtp-server:", err.message); });
process.on("SIGUSR1", () => { console.log(`${count}`); });
process.on("SIGTERM", () => { process.exit(0); });
server.listen(Number(port), "127.0.0.1");
