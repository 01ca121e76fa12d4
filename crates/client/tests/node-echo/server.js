// Echo server on the official `socket.io` package, for crates/client/tests/node_interop.rs.
//
// Env: PORT (0 = any free port), PING_INTERVAL_MS, PING_TIMEOUT_MS.
// Prints `listening <port>` on stdout once it accepts connections, and exits
// when its stdin closes, so a crashed test run leaves no server behind.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 0);
const httpServer = http.createServer();
const io = new Server(httpServer, {
  pingInterval: Number(process.env.PING_INTERVAL_MS || 25000),
  pingTimeout: Number(process.env.PING_TIMEOUT_MS || 20000),
});

const nsp = io.of("/locations");

nsp.use((socket, next) => {
  if (socket.handshake.auth && socket.handshake.auth.token === "bad") {
    next(new Error("Invalid token"));
  } else {
    next();
  }
});

nsp.on("connection", (socket) => {
  // Acks its data unchanged.
  socket.on("echo", (data, ack) => {
    if (typeof ack === "function") ack(data);
  });
  // Acks the handshake's auth, query and headers, to check what the client sent.
  socket.on("whoami", (_data, ack) => {
    const { auth, query, headers } = socket.handshake;
    ack({ auth, query, headers });
  });
  // Makes the server emit `pushed` with the same data back to this socket.
  socket.on("push", (data) => {
    socket.emit("pushed", data);
  });
  // Disconnects this socket from the namespace (a `41` packet).
  socket.on("kick", () => {
    socket.disconnect();
  });
  // Tells the client each time its heartbeat pong arrives.
  let pongs = 0;
  socket.conn.on("packet", (packet) => {
    if (packet.type === "pong") socket.emit("pong-seen", ++pongs);
  });
  // `no-reply` has no handler: an ack requested for it never comes.
});

httpServer.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening ${httpServer.address().port}\n`);
});

process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
