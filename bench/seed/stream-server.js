// A third-party AMQP 1.0 server (rhea) that serves one pre-generated stream the way Aliyun's
// server-side subscription would, for the side-by-side baseline of `receiver bench`: pure TLS,
// SASL PLAIN checked with Aliyun's aksign scheme, one receiver link per connection, Data bodies
// with topic/messageId/generateTime application properties. Adapted from
// tests/interop/rhea_server.js.
//
// Configuration: JSON in the STREAM_CONFIG environment variable:
//   { "cert_file", "key_file", "access_key_id", "access_key_secret", "iot_instance_id",
//     "consumer_group_id", "stream_file" }
// `stream_file` holds one message per line: {"topic", "message_id", "generate_time", "body"} with
// the body as a (JSON) string. Messages are encoded before anything is sent, so the server's own
// per-message cost stays low.
//
// Protocol with the bench, one JSON object per line on stdout:
//   {"event":"listening","port":N}   ready for connections
//   {"event":"link"}                 a receiver link is attached; nothing is sent until the bench
//                                    writes "go" on stdin (so it can sample the receiver first)
//   {"event":"done","accepted":N,...} every message was accepted
// Released (and modified) deliveries are queued again; rejected ones count as settled. The server
// exits when stdin closes.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const readline = require('readline');
const rhea = require('rhea');

const cfg = JSON.parse(process.env.STREAM_CONFIG || '{}');
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

function verify(username, password) {
    const m = /^([^|]*)\|([^|]*)\|$/.exec(username || '');
    if (!m) return false;
    const params = {};
    for (const pair of m[2].split(',').filter((p) => p.length)) {
        const i = pair.indexOf('=');
        if (i < 0) return false;
        params[pair.slice(0, i)] = pair.slice(i + 1);
    }
    const algo = { hmacsha1: 'sha1', hmacsha256: 'sha256', hmacmd5: 'md5' }[
        (params.signMethod || '').toLowerCase()
    ];
    if (!algo || params.authMode !== 'aksign') return false;
    if (params.authId !== cfg.access_key_id) return false;
    if ((params.iotInstanceId || '') !== cfg.iot_instance_id) return false;
    if (params.consumerGroupId !== cfg.consumer_group_id) return false;
    const expected = crypto
        .createHmac(algo, cfg.access_key_secret)
        .update(`authId=${params.authId}&timestamp=${params.timestamp}`)
        .digest('base64');
    return (
        typeof password === 'string' &&
        password.length === expected.length &&
        crypto.timingSafeEqual(Buffer.from(password), Buffer.from(expected))
    );
}

// Pre-encode every message.
const encoded = [];
for (const line of fs.readFileSync(cfg.stream_file, 'utf8').split('\n')) {
    if (!line) continue;
    const m = JSON.parse(line);
    encoded.push(
        rhea.message.encode({
            application_properties: {
                topic: m.topic,
                messageId: m.message_id,
                generateTime: rhea.types.wrap_long(m.generate_time),
            },
            body: rhea.message.data_section(Buffer.from(m.body, 'utf8')),
        })
    );
}
const total = encoded.length;
const queue = encoded.map((_, i) => i);
let head = 0;
let accepted = 0;
let rejected = 0;
let released = 0;
let go = false;
const senders = [];

const container = rhea.create_container({ id: 'rhea-stream-server' });
container.sasl_server_mechanisms.enable_plain((username, password) => {
    const ok = verify(username, password);
    emit({ event: 'auth', ok });
    return ok;
});

function pump(sender) {
    if (!go) return;
    while (head < queue.length && sender.sendable()) {
        const i = queue[head++];
        const delivery = sender.send(encoded[i], undefined, 0);
        delivery.index = i;
    }
    if (head > 65536 && head * 2 > queue.length) {
        queue.splice(0, head);
        head = 0;
    }
}

function settled() {
    if (accepted + rejected === total) {
        emit({ event: 'done', accepted, rejected, released });
    }
}

container.on('sender_open', (ctx) => {
    const source = ctx.sender.remote.attach.source || {};
    if (ctx.connection.__links) {
        ctx.sender.close({ condition: 'amqp:not-allowed', description: 'one receiver link per connection' });
        return;
    }
    ctx.connection.__links = 1;
    ctx.sender.set_source({ address: source.address || 'default' });
    senders.push(ctx.sender);
    emit({ event: 'link' });
});
container.on('receiver_open', (ctx) => {
    ctx.receiver.close({ condition: 'amqp:not-allowed', description: 'sender links are not supported' });
});
container.on('sendable', (ctx) => pump(ctx.sender));
container.on('accepted', () => {
    accepted++;
    settled();
});
container.on('rejected', () => {
    rejected++;
    settled();
});
// rhea reports "modified" as "released" too; both go back into the queue.
container.on('released', (ctx) => {
    released++;
    queue.push(ctx.delivery.index);
    pump(ctx.sender);
});
container.on('sender_close', (ctx) => {
    const i = senders.indexOf(ctx.sender);
    if (i >= 0) senders.splice(i, 1);
});
container.on('disconnected', () => emit({ event: 'disconnected' }));
container.on('error', (ctx) => emit({ event: 'error', error: String(ctx.error) }));

const server = container.listen({
    host: '127.0.0.1',
    port: 0,
    transport: 'tls',
    key: fs.readFileSync(cfg.key_file),
    cert: fs.readFileSync(cfg.cert_file),
});
server.on('listening', () => emit({ event: 'listening', port: server.address().port, messages: total }));
server.on('error', (e) => {
    emit({ event: 'server_error', error: String(e) });
    process.exit(1);
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() === 'go') {
        go = true;
        for (const s of senders) pump(s);
    }
});
process.stdin.on('end', () => process.exit(0));
