'use strict';
// Drives Coda with the unmodified `openwhisk` npm client: create an action, invoke it blocking
// (result only, then the full record), list and get activations, delete the action. Prints one
// JSON line with what it saw; exits 1 on the first failure. Run by openwhisk_test.go with
// NODE_PATH pointing at test/node/node_modules.
const assert = require('assert');
const openwhisk = require('openwhisk');

const apihost = process.env.OW_APIHOST;
const apiKey = process.env.OW_AUTH;
const name = process.env.OW_ACTION;

const ow = openwhisk({ apihost, api_key: apiKey, ignore_certs: true });

const code = 'function main(params) { return { greeting: "hello " + (params.name || "world") }; }';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function run() {
  const created = await ow.actions.create({ name, action: code, kind: 'nodejs:20' });
  assert.strictEqual(created.name, name, 'create returns the action');

  const result = await ow.actions.invoke({ name, blocking: true, result: true, params: { name: 'coda' } });
  assert.deepStrictEqual(result, { greeting: 'hello coda' }, 'blocking invoke with result');

  const record = await ow.actions.invoke({ name, blocking: true, params: { name: 'record' } });
  assert.ok(record.activationId, 'blocking invoke returns the record: ' + JSON.stringify(record));
  assert.deepStrictEqual(record.response && record.response.result, { greeting: 'hello record' }, 'record: ' + JSON.stringify(record));

  const got = await ow.actions.get({ name });
  assert.strictEqual(got.exec.kind, 'nodejs:20', 'get returns the kind');

  // The record may be written a moment after the response: poll briefly.
  let listed = [];
  for (let i = 0; i < 50; i++) {
    listed = await ow.activations.list({ name, limit: 20 });
    if (listed.some((a) => a.activationId === record.activationId)) break;
    await sleep(100);
  }
  assert.ok(listed.some((a) => a.activationId === record.activationId), 'activation list shows the invocation');

  // Coda serves a record before its end (the background phase); poll until it has ended.
  let one;
  let polls = 0;
  for (let i = 0; i < 100; i++) {
    one = await ow.activations.get({ name: record.activationId });
    if (one.end) break;
    polls++;
    await sleep(100);
  }
  assert.strictEqual(one.activationId, record.activationId, 'activation get');
  assert.deepStrictEqual(one.response && one.response.result, { greeting: 'hello record' }, 'activation get: ' + JSON.stringify(one));

  const actions = await ow.actions.list();
  assert.ok(actions.some((a) => a.name === name), 'action list shows the action');

  await ow.actions.delete({ name });
  let gone = false;
  try {
    await ow.actions.get({ name });
  } catch (e) {
    gone = e.statusCode === 404;
  }
  assert.ok(gone, 'the deleted action answers 404');

  // The other kinds, deployed and invoked the same way.
  const others = {
    'python:3.11': 'def main(params):\n    return {"greeting": "hello " + params.get("name", "world")}\n',
    'go:1.26': 'package main\n\nfunc Main(p map[string]interface{}) map[string]interface{} {\n\treturn map[string]interface{}{"greeting": "hello " + p["name"].(string)}\n}\n',
  };
  const kinds = [];
  for (const [kind, source] of Object.entries(others)) {
    const kname = name + '-' + kind.split(':')[0];
    await ow.actions.create({ name: kname, action: source, kind });
    const r = await ow.actions.invoke({ name: kname, blocking: true, result: true, params: { name: kind } });
    assert.deepStrictEqual(r, { greeting: 'hello ' + kind }, kind + ' through the npm client');
    await ow.actions.delete({ name: kname });
    kinds.push(kind);
  }

  console.log(JSON.stringify({ ok: true, activationId: record.activationId, listed: listed.length, recordPolls: polls, kinds }));
}

run().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
