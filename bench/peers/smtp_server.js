// Peer: nodemailer's smtp-server with a handler that consumes every message
// and counts it. Usage: node smtp_server.js PORT (smtp-server is found
// through NODE_PATH, which the bench points at its scratch folder).
"use strict";
const { SMTPServer } = require("smtp-server");

const port = Number(process.argv[2]);
let count = 0;
let bytes = 0;

const server = new SMTPServer({
  // Its fastest configuration: no TLS, no AUTH, no reverse DNS per client.
  disabledCommands: ["STARTTLS", "AUTH"],
  authOptional: true,
  disableReverseLookup: true,
  logger: false,
  size: 0,
  onData(stream, session, callback) {
    stream.on("data", (chunk) => { bytes += chunk.length; });
    stream.on("end", () => { count++; callback(); });
  },
});
// Node sockets keep Nagle's algorithm on: a reply written in two pieces
// then waits for the client's delayed ACK (about 40 ms a connection).
server.server.on("connection", (socket) => socket.setNoDelay(true));
server.on("error", (err) => { console.error("smtp-server:", err.message); });
process.on("SIGUSR1", () => { console.log(`${count} ${bytes}`); });
process.on("SIGTERM", () => { server.close(() => process.exit(0)); });
server.listen(port, "127.0.0.1");
