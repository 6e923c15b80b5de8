'use strict';
// The loader turns an init message into the action's entry function, the way OpenWhisk's
// Node.js runtime does: source text with `exports.main`, `module.exports = {main}`,
// `module.exports = fn` or a plain top-level `function main`; or a zip archive whose
// package.json `main` (or index.js) is loaded with its own node_modules.

const fs = require('fs');
const os = require('os');
const path = require('path');
const Module = require('module');
const { pathToFileURL } = require('url');
const { extract } = require('./zip');

const TOP_MAIN = Symbol.for('coda.topLevelMain');

// load returns {fn, self}: the entry function and the object to call it on.
async function load(msg) {
  const name = msg.main || 'main';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coda-action-'));
  if (msg.binary) {
    extract(Buffer.from(msg.code || '', 'base64'), dir);
    return pick((await settled(await loadPackage(dir), name)).exp, null, name);
  }
  return loadSource(String(msg.code || ''), dir, name);
}

async function loadPackage(dir) {
  let entry = './index.js';
  const pj = path.join(dir, 'package.json');
  if (fs.existsSync(pj)) {
    let pkg;
    try {
      pkg = JSON.parse(fs.readFileSync(pj, 'utf8'));
    } catch (e) {
      throw new Error(`package.json is not valid JSON: ${e.message}`);
    }
    if (typeof pkg.main === 'string' && pkg.main) entry = './' + pkg.main.replace(/^\.\//, '');
  }
  const req = Module.createRequire(path.join(dir, 'package.json'));
  let file;
  try {
    file = req.resolve(entry);
  } catch {
    throw new Error(`the archive has no ${entry.slice(2)} (set "main" in package.json)`);
  }
  try {
    return req(file);
  } catch (e) {
    if (e && e.code === 'ERR_REQUIRE_ESM') return import(pathToFileURL(file).href);
    throw e;
  }
}

async function loadSource(code, dir, name) {
  const filename = path.join(dir, 'index.js');
  // On disk too, so that __filename, __dirname and relative paths mean something.
  fs.writeFileSync(filename, code);
  const m = new Module(filename, null);
  m.filename = filename;
  m.paths = Module._nodeModulePaths(dir);
  // A plain `function main` is not exported; this suffix, compiled in the same scope, hands it
  // over. The name is only inserted when it is a plain identifier (it comes from the user).
  let suffix = '';
  if (isIdentifier(name)) {
    suffix = `\n;(function () { try { if (typeof ${name} === 'function') globalThis[Symbol.for('coda.topLevelMain')] = ${name}; } catch (e) {} })();\n`;
  }
  try {
    m._compile(code + suffix, filename);
  } catch (e) {
    // Node.js 20.19+ compiles ES module syntax itself, but not a module with top-level await.
    if ((e instanceof SyntaxError && /\b(import|export)\b|await is only valid/.test(e.message)) || (e && e.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
      // An ES module: load it as one.
      const file = path.join(dir, 'index.mjs');
      fs.writeFileSync(file, code);
      return pick(await import(pathToFileURL(file).href), null, name);
    }
    if (suffix !== '' && e instanceof SyntaxError) {
      // Code that does not parse may run into the suffix (an unclosed brace): report the error
      // the code has on its own, with its own line numbers.
      const alone = new Module(filename, null);
      alone.filename = filename;
      alone._compile(code, filename);
    }
    throw e;
  } finally {
    // Read before deleting: pick needs it.
    m.topMain = globalThis[TOP_MAIN];
    delete globalThis[TOP_MAIN];
  }
  return pick((await settled(m.exports, name)).exp, m.topMain, name);
}

// settled awaits a module whose exports are a promise (`module.exports = (async () => {...})()`,
// a module that must finish setting up before it can serve) and returns what it resolves to.
// (Not async itself: returning a thenable from an async function would adopt it in every case.)
function settled(exp, name) {
  if (exp == null || typeof exp.then !== 'function' || typeof exp[name] === 'function') return { exp };
  return Promise.resolve(exp).then((v) => ({ exp: v }));
}

function isIdentifier(name) {
  if (!/^[A-Za-z_$][\w$]*$/.test(name)) return false;
  try {
    // Rejects reserved words (`default`, `class`, ...), which match the pattern.
    new Function(`return typeof ${name};`); // eslint-disable-line no-new-func
    return true;
  } catch {
    return false;
  }
}

function pick(exp, topMain, name) {
  if (exp != null && typeof exp[name] === 'function') return { fn: exp[name], self: exp };
  if (typeof exp === 'function') return { fn: exp, self: null };
  if (typeof topMain === 'function') return { fn: topMain, self: null };
  if (exp != null && typeof exp.default === 'function') return { fn: exp.default, self: exp };
  if (exp != null && exp.default != null && typeof exp.default[name] === 'function') {
    return { fn: exp.default[name], self: exp.default };
  }
  throw new Error(`the action has no function "${name}": define function ${name}(params) or export it (exports.${name} = ...)`);
}

// describe turns a load failure into one clear line, with the line number of a syntax error.
function describe(e) {
  if (!(e instanceof Error)) return `Error: ${String(e)}`;
  let msg = `${e.name}: ${e.message}`;
  if (e instanceof SyntaxError && typeof e.stack === 'string') {
    const m = /^[^\n]*?:(\d+)\n/.exec(e.stack);
    if (m) msg += ` (line ${m[1]})`;
  }
  return msg;
}

module.exports = { load, describe };
