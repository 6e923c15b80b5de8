'use strict';
// A small zip reader for action archives: stored and deflated entries, no zip64, no encryption.
// The runtime has no dependencies, and the archive arrives in memory, so reading the central
// directory and inflating each entry is all that is needed.

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const SIG_EOCD = 0x06054b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

// extract writes the archive buf under dir (which must exist) and returns the number of files.
function extract(buf, dir) {
  let eocd = -1;
  const stop = Math.max(0, buf.length - EOCD_SIZE - MAX_COMMENT);
  for (let i = buf.length - EOCD_SIZE; i >= stop; i--) {
    if (buf.readUInt32LE(i) === SIG_EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('the action archive is not a zip file (no end of central directory)');
  const count = buf.readUInt16LE(eocd + 10);
  let off = buf.readUInt32LE(eocd + 16);
  if (count === 0xffff || off === 0xffffffff) throw new Error('zip64 archives are not supported');
  const root = path.resolve(dir);
  let files = 0;
  for (let i = 0; i < count; i++) {
    if (off + 46 > buf.length || buf.readUInt32LE(off) !== SIG_CENTRAL) throw new Error('corrupt zip: bad central directory');
    const flags = buf.readUInt16LE(off + 8);
    const method = buf.readUInt16LE(off + 10);
    const csize = buf.readUInt32LE(off + 20);
    const nameLen = buf.readUInt16LE(off + 28);
    const extraLen = buf.readUInt16LE(off + 30);
    const commentLen = buf.readUInt16LE(off + 32);
    const mode = buf.readUInt32LE(off + 38) >>> 16;
    const local = buf.readUInt32LE(off + 42);
    const name = buf.toString('utf8', off + 46, off + 46 + nameLen).replace(/\\/g, '/');
    off += 46 + nameLen + extraLen + commentLen;

    const target = path.resolve(root, name);
    if (target !== root && !target.startsWith(root + path.sep)) throw new Error(`zip entry escapes the archive: ${name}`);
    if (name.endsWith('/')) {
      fs.mkdirSync(target, { recursive: true });
      continue;
    }
    if (flags & 1) throw new Error(`encrypted zip entries are not supported: ${name}`);
    if (local + 30 > buf.length || buf.readUInt32LE(local) !== SIG_LOCAL) throw new Error(`corrupt zip: bad local header for ${name}`);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const raw = buf.subarray(start, start + csize);
    let data;
    if (method === 0) data = raw;
    else if (method === 8) data = zlib.inflateRawSync(raw);
    else throw new Error(`unsupported zip compression method ${method} for ${name}`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    if ((mode & S_IFMT) === S_IFLNK) {
      fs.symlinkSync(data.toString('utf8'), target);
    } else {
      fs.writeFileSync(target, data, { mode: mode & 0o777 || 0o644 });
    }
    files++;
  }
  return files;
}

module.exports = { extract };
