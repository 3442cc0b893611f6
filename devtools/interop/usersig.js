// Interop check against Tencent's own UserSig implementation (npm tls-sig-api-v2).
// Usage: node usersig.js <path to tls-sig-api-v2> <sdkappid> <key> <identifier> <expire> <time> <our usersig>
// Prints JSON: theirs (a UserSig made by Tencent's code with the clock pinned), ours (our
// UserSig decoded by Node's zlib), and whether our TLS.sig matches an HMAC computed here.
const [modPath, appid, key, id, expire, time, ours] = process.argv.slice(2);
const zlib = require('zlib');
const crypto = require('crypto');
const TLSSigAPIv2 = require(modPath);
Date.now = () => Number(time) * 1000;
const theirs = new TLSSigAPIv2.Api(Number(appid), key).genUserSig(id, Number(expire));
const decode = (s) => JSON.parse(zlib.inflateSync(Buffer.from(s.replace(/\*/g, '+').replace(/-/g, '/').replace(/_/g, '='), 'base64')).toString());
const doc = decode(ours);
const content = `TLS.identifier:${doc['TLS.identifier']}\nTLS.sdkappid:${doc['TLS.sdkappid']}\nTLS.time:${doc['TLS.time']}\nTLS.expire:${doc['TLS.expire']}\n`;
const hmac = crypto.createHmac('sha256', key).update(content).digest('base64');
console.log(JSON.stringify({ theirs, ours: doc, hmacMatches: hmac === doc['TLS.sig'] }));
