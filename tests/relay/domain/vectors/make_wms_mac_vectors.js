// Known-answer vectors for the X-WMS-Content-MAC header, computed exactly as the
// vendor's documentation does it (shared/spec/wms-webhook.txt). Regenerate with:
//   node tests/relay/domain/vectors/make_wms_mac_vectors.js > tests/relay/domain/vectors/wms_mac_vectors.json
// Each body is given as base64 so that invalid UTF-8 survives the JSON file.
'use strict';
const crypto = require('crypto');

function vendorMac(macSecret, requestBody) {
  const hmac = crypto.createHmac('sha256', macSecret);
  hmac.update(requestBody.toString(), 'ascii');
  return 'hmac-sha256=' + hmac.digest('hex');
}

const event = (extra) => Buffer.from(
  '{"timestamp":1689684577,"sessionId":"ryueiwoqfh910fu3rpqruvfiu","sequence":0,' +
  '"severity":"INFO","event":"MEASUREMENT_CREATED",' + extra +
  '"payload":{"measurementId":"f0c8ca8d-111d-4dcf-a69d-46ed39a2db06"}}', 'utf8');

const cases = [
  ['ascii event', 'wms-secret', event('')],
  ['empty body', 'wms-secret', Buffer.alloc(0)],
  ['latin-1 range (e acute, u umlaut)', 'wms-secret', event('"note":"caf\u00e9 M\u00fcller",')],
  ['bmp beyond latin-1 (CJK, polish L)', 'wms-secret', event('"note":"\u4e2d\u6587 \u0141\u00f3d\u017a",')],
  ['astral (emoji, surrogate pair)', 'wms-secret', event('"note":"\ud83d\ude00\ud83d\udc4d",')],
  ['byte order mark kept', 'wms-secret', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), event('')])],
  ['non-ascii secret', 's\u00e9cret-\u4e2d', event('')],
  ['invalid utf-8: lone 0xff', 'wms-secret', Buffer.concat([event(''), Buffer.from([0xff])])],
  ['invalid utf-8: truncated sequence', 'wms-secret', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xe4, 0xb8]), Buffer.from('"}')])],
  ['invalid utf-8: overlong slash', 'wms-secret', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])],
  ['invalid utf-8: encoded surrogate', 'wms-secret', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])],
  ['invalid utf-8: latin-1 encoded e acute', 'wms-secret', Buffer.from('{"a":"caf\u00e9"}', 'latin1')],
];

const vectors = cases.map(([name, secret, body]) => ({
  name,
  secret,
  body_b64: body.toString('base64'),
  mac: vendorMac(secret, body),
}));
process.stdout.write(JSON.stringify({generator: 'node ' + process.version, vectors}, null, 2) + '\n');
