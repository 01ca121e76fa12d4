// A TCP forwarder that can cut the line: clients connect to the cutter
// (127.0.0.1, a free port), every connection is forwarded to
// 127.0.0.1:<targetPort>. `cut(ms)` destroys every open connection pair at
// once (both ends, so neither side gets what was in flight) and, for `ms`,
// closes every new connection as soon as it is accepted; then it forwards
// again. What a client sees of a network outage, without touching the server.
import net from 'node:net';

export class Cutter {
  #listener = null;
  #pairs = new Set();
  #timer = null;
  #waiters = [];

  constructor(targetPort, host = '127.0.0.1') {
    this.targetPort = targetPort;
    this.host = host;
    this.port = null;
    this.cutting = false;
    this.accepted = 0; // connections forwarded
    this.refused = 0; // connections closed at once during a cut
    this.cuts = 0;
  }

  get url() { return `http://127.0.0.1:${this.port}`; }
  get nsUrl() { return `${this.url}/locations`; }
  get open() { return this.#pairs.size; }

  /**
   * `server` as seen through the cutter: same secret and tokens, but its
   * `port` (hence `url`, `nsUrl`) is the cutter's, so the helpers of
   * lib/client.mjs that take a server connect through the cut.
   */
  front(server) {
    return Object.create(server, { port: { value: this.port, enumerable: true } });
  }

  listen() {
    this.#listener = net.createServer((client) => this.#accept(client));
    return new Promise((resolve, reject) => {
      this.#listener.once('error', reject);
      this.#listener.listen(0, '127.0.0.1', () => {
        this.port = this.#listener.address().port;
        resolve(this);
      });
    });
  }

  #accept(client) {
    client.on('error', () => {});
    if (this.cutting) {
      this.refused += 1;
      client.destroy();
      return;
    }
    this.accepted += 1;
    const upstream = net.connect({ port: this.targetPort, host: this.host });
    upstream.on('error', () => {});
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const pair = { client, upstream };
    this.#pairs.add(pair);
    const end = () => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  #dropAll() {
    for (const { client, upstream } of [...this.#pairs]) {
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  /**
   * Cut every open connection and refuse new ones for `ms` (Infinity: until
   * `restore()`). Resolves when connections are forwarded again.
   */
  cut(ms) {
    this.cuts += 1;
    this.cutting = true;
    this.#dropAll();
    clearTimeout(this.#timer);
    this.#timer = Number.isFinite(ms) ? setTimeout(() => this.restore(), ms) : null;
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** End a cut now (forward new connections again). */
  restore() {
    clearTimeout(this.#timer);
    this.#timer = null;
    this.cutting = false;
    for (const w of this.#waiters.splice(0)) w();
  }

  close() {
    this.restore();
    this.#dropAll();
    const l = this.#listener;
    this.#listener = null;
    if (!l) return Promise.resolve();
    return new Promise((resolve) => l.close(() => resolve()));
  }
}

/** A cutter listening on a free loopback port, forwarding to `targetPort`. */
export function startCutter(targetPort, opts = {}) {
  return new Cutter(targetPort, opts.host).listen();
}
