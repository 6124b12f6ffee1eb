// k6 version of `loadtest`: open-loop constant arrival rate of signed native callbacks
// (bets, wins naming a recent bet, rollbacks, balance calls and exact retries).
//
//   k6 run -e TARGET=http://127.0.0.1:8080 -e RATE=1000 -e DURATION=30s loadtest/k6/callbacks.js
//
// TARGET must be a gateway on this machine (loopback). PLAYERS (default 1000) must exist:
// the demo config seeds player-1 ... player-1000. SECRET is the demo provider's secret.
import http from 'k6/http';
import crypto from 'k6/crypto';
import { check } from 'k6';

const TARGET = __ENV.TARGET || 'http://127.0.0.1:8080';
const PROVIDER = __ENV.PROVIDER || 'demo';
const SECRET = __ENV.SECRET || 'demo-secret';
const PLAYERS = parseInt(__ENV.PLAYERS || '1000', 10);
const RUN = `${Date.now() % 1000000007}`;

if (!/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(TARGET)) {
  throw new Error(`refusing ${TARGET}: load tests target loopback only`);
}

export const options = {
  scenarios: {
    callbacks: {
      executor: 'constant-arrival-rate',
      rate: parseInt(__ENV.RATE || '500', 10),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: parseInt(__ENV.VUS || '64', 10),
      maxVUs: parseInt(__ENV.MAX_VUS || '512', 10),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: ['p(99)<50'],
  },
  summaryTrendStats: ['p(50)', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
};

// Per VU: its own recent bets and requests (k6 VUs share nothing).
const recentBets = [];
const recentRequests = [];
let counter = 0;

function amount(maxCents) {
  const cents = Math.floor(Math.random() * maxCents);
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
}

function nextRequest() {
  counter += 1;
  const id = `k6-${RUN}-${__VU}-${counter}`;
  if (Math.random() < 0.1 && recentRequests.length > 0) {
    return recentRequests[Math.floor(Math.random() * recentRequests.length)];
  }
  const roll = Math.random();
  let request;
  if (roll < 0.5 || recentBets.length === 0) {
    const player = 1 + Math.floor(Math.random() * PLAYERS);
    const body = { player_id: `player-${player}`, currency: 'EUR', amount: amount(200) || '0.01',
      transaction_id: `${id}-b`, round_id: `${id}-r`, game_id: 'slot-1' };
    recentBets.push({ player, id });
    if (recentBets.length > 256) recentBets.shift();
    request = ['bet', JSON.stringify(body)];
  } else if (roll < 0.85) {
    const bet = recentBets[Math.floor(Math.random() * recentBets.length)];
    const body = { player_id: `player-${bet.player}`, currency: 'EUR', amount: amount(400),
      transaction_id: `${id}-w`, round_id: `${bet.id}-r`, game_id: 'slot-1',
      bet_transaction_id: `${bet.id}-b` };
    request = ['win', JSON.stringify(body)];
  } else if (roll < 0.9) {
    const bet = recentBets[Math.floor(Math.random() * recentBets.length)];
    const body = { player_id: `player-${bet.player}`, transaction_id: `${id}-x`,
      reference_transaction_id: `${bet.id}-b` };
    request = ['rollback', JSON.stringify(body)];
  } else {
    const player = 1 + Math.floor(Math.random() * PLAYERS);
    return ['balance', JSON.stringify({ player_id: `player-${player}`, currency: 'EUR' })];
  }
  recentRequests.push(request);
  if (recentRequests.length > 256) recentRequests.shift();
  return request;
}

export default function () {
  const [action, body] = nextRequest();
  // Every attempt is signed afresh over the exact bytes sent.
  const t = Math.floor(Date.now() / 1000);
  const signature = crypto.hmac('sha256', SECRET, `${t}.${body}`, 'hex');
  const res = http.post(`${TARGET}/api/provider-callback/${PROVIDER}/${action}`, body, {
    headers: { 'Content-Type': 'application/json', 'X-Signature': `t=${t},v1=${signature}` },
    tags: { action },
  });
  check(res, {
    'answered 200': (r) => r.status === 200,
    'final status': (r) => r.status !== 200 || ['OK', 'INSUFFICIENT_FUNDS', 'ROLLBACK_NOT_PERMITTED',
      'TRANSACTION_ROLLED_BACK', 'TRANSACTION_NOT_FOUND'].includes(r.json('status')),
  });
}
