// A third-party AMQP 1.0 server (rhea) that behaves like Aliyun's server-side subscription, for
// tests/it/amqp_interop.rs: pure TLS, SASL PLAIN verified with Aliyun's aksign scheme, one receiver
// link per connection, messages with a Data body and topic/messageId/generateTime application
// properties. Every event is printed on stdout as one JSON object per line.
//
// Configuration comes as JSON in the INTEROP_CONFIG environment variable:
//   { "cert_file", "key_file", "access_key_id", "access_key_secret", "iot_instance_id",
//     "consumer_group_id", "messages": [{ "topic", "message_id", "generate_time", "body_b64" }] }
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const rhea = require('rhea');

const cfg = JSON.parse(process.env.INTEROP_CONFIG || '{}');
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

// Aliyun's check: clientId|k=v,...| in any order, signMethod case-insensitive,
// password = base64(HMAC(secret, "authId=..&timestamp=..")).
function verify(username, password) {
    const m = /^([^|]*)\|([^|]*)\|$/.exec(username || '');
    if (!m) return { ok: false, reason: 'malformed username' };
    const params = {};
    for (const pair of m[2].split(',').filter((p) => p.length)) {
        const i = pair.indexOf('=');
        if (i < 0) return { ok: false, reason: 'malformed parameter' };
        params[pair.slice(0, i)] = pair.slice(i + 1);
    }
    const algo = { hmacsha1: 'sha1', hmacsha256: 'sha256', hmacmd5: 'md5' }[
        (params.signMethod || '').toLowerCase()
    ];
    if (!algo) return { ok: false, reason: 'signMethod' };
    if (params.authMode !== 'aksign') return { ok: false, reason: 'authMode' };
    if (params.authId !== cfg.access_key_id) return { ok: false, reason: 'authId' };
    if ((params.iotInstanceId || '') !== cfg.iot_instance_id) return { ok: false, reason: 'iotInstanceId' };
    if (params.consumerGroupId !== cfg.consumer_group_id) return { ok: false, reason: 'consumerGroupId' };
    const expected = crypto
        .createHmac(algo, cfg.access_key_secret)
        .update(`authId=${params.authId}&timestamp=${params.timestamp}`)
        .digest('base64');
    const ok =
        typeof password === 'string' &&
        password.length === expected.length &&
        crypto.timingSafeEqual(Buffer.from(password), Buffer.from(expected));
    return { ok, reason: ok ? 'ok' : 'signature', client_id: m[1], timestamp: params.timestamp };
}

const container = rhea.create_container({ id: 'rhea-fake-aliyun' });
container.sasl_server_mechanisms.enable_plain((username, password) => {
    const v = verify(username, password);
    emit({ event: 'auth', ok: v.ok, reason: v.reason, client_id: v.client_id, timestamp: v.timestamp });
    return v.ok;
});

const queue = (cfg.messages || []).slice();
const linksPerConnection = new Map();

container.on('connection_open', (ctx) => {
    emit({
        event: 'open',
        container_id: ctx.connection.remote.open.container_id,
        idle_time_out: ctx.connection.remote.open.idle_time_out,
    });
});

container.on('sender_open', (ctx) => {
    const n = (linksPerConnection.get(ctx.connection) || 0) + 1;
    linksPerConnection.set(ctx.connection, n);
    const source = ctx.sender.remote.attach.source || {};
    emit({ event: 'link', source: source.address, n });
    if (n > 1) {
        ctx.sender.close({ condition: 'amqp:not-allowed', description: 'one receiver link per connection' });
        return;
    }
    ctx.sender.set_source({ address: source.address || 'default' });
});

container.on('receiver_open', (ctx) => {
    emit({ event: 'link_refused', reason: 'sender links are not supported' });
    ctx.receiver.close({ condition: 'amqp:not-allowed', description: 'sender links are not supported' });
});

function pump(sender) {
    while (sender.sendable() && queue.length) {
        const m = queue.shift();
        const delivery = sender.send({
            application_properties: {
                topic: m.topic,
                messageId: m.message_id,
                generateTime: rhea.types.wrap_long(m.generate_time),
            },
            body: rhea.message.data_section(Buffer.from(m.body_b64, 'base64')),
        });
        delivery.message_id = m.message_id;
        delivery.original = m;
        emit({ event: 'sent', message_id: m.message_id });
    }
}

container.on('sendable', (ctx) => pump(ctx.sender));

for (const outcome of ['accepted', 'rejected']) {
    container.on(outcome, (ctx) => emit({ event: 'outcome', outcome, message_id: ctx.delivery.message_id }));
}
// rhea reports "modified" as "released" too; both go back into the queue.
container.on('released', (ctx) => {
    emit({ event: 'outcome', outcome: 'released', message_id: ctx.delivery.message_id });
    queue.push(ctx.delivery.original);
    pump(ctx.sender);
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
server.on('listening', () => emit({ event: 'listening', port: server.address().port }));
server.on('error', (e) => {
    emit({ event: 'server_error', error: String(e) });
    process.exit(1);
});
// Exit with the parent: the test closes our stdin.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
