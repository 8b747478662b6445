// Sends events with @segment/analytics-node (its own batching and retries) to the host given
// in the JSON argument; exits 1 if the SDK reported any error. Run by test_sdks.py with
// NODE_PATH pointing at the SDK that `make sdk` installed.
'use strict';
const { Analytics } = require('@segment/analytics-node');

const opts = JSON.parse(process.argv[2]);
const analytics = new Analytics({
  writeKey: opts.writeKey, host: opts.host, flushAt: opts.flushAt || 15,
  flushInterval: 200, maxRetries: opts.maxRetries || 10, httpRequestTimeout: 10000,
});
let errors = 0;
analytics.on('error', (err) => { errors += 1; console.log('ERROR', err.code, String(err.reason)); });
analytics.on('http_response', (resp) => console.log('RESPONSE', resp.status));
const context = { device: { type: 'android', model: 'Pixel 8' },
                  os: { name: 'Android', version: '14' }, app: { version: '5.0.0' } };
for (let i = 0; i < opts.tracks; i += 1) {
  analytics.track({ userId: `u-${i % 3}`, event: 'Workout Completed', context,
                    properties: { workoutType: 'cardio', duration: 600 + i } });
}
for (let i = 0; i < opts.identifies; i += 1) {
  analytics.identify({ userId: `u-${i}`, traits: { plan: 'free' }, context });
}
for (let i = 0; i < opts.pages; i += 1) {
  analytics.page({ anonymousId: `a-${i}`, name: 'Pricing', properties: { path: '/pricing' } });
}
for (let i = 0; i < opts.screens; i += 1) {
  analytics.screen({ userId: `u-${i}`, name: 'Today', context });
}
analytics.closeAndFlush({ timeout: 60000 }).then(() => {
  console.log(`DONE errors=${errors}`);
  process.exit(errors ? 1 : 0);
});
