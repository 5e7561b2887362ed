// A task app in Node.js: an iris classifier with its prompt in its own code, served over the
// promptopt task-app protocol (promptopt.task-app/1). No npm packages: Node's http and fetch.
//
//   DATA=../shared/data/iris/iris.csv TOKEN=secret PORT=8123 node examples/task-app-node/app.mjs
//
// It prints one JSON line {"url": ...} once it listens (PORT=0 picks a free port). Its LM calls go
// only to the inference_url of each rollout, with the rollout's inference_token as the API key.

import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { timingSafeEqual } from "node:crypto";

const PROTOCOL = "promptopt.task-app/1";
const SPECIES = ["setosa", "versicolor", "virginica"];

// The app's production prompt. promptopt optimizes it without this file changing: its proxy puts
// the candidate's text in place of this one in the calls the app makes.
const SYSTEM_PROMPT = "You are a botanist. Which species of iris has these measurements?";

const TOKEN = process.env.TOKEN || "";
const PORT = Number(process.env.PORT || 0);
const DATA = process.env.DATA;
if (!DATA) {
  console.error("Set DATA to the iris CSV (shared/data/iris/iris.csv).");
  process.exit(2);
}

// Rows: sepal length, sepal width, petal length, petal width, class index (first line: a header).
const rows = readFileSync(DATA, "utf8").trim().split("\n").slice(1).map((line, i) => {
  const v = line.split(",");
  return { id: `iris-${i}`, features: v.slice(0, 4), label: SPECIES[Number(v[4])] };
});

// A fixed shuffle (a linear congruential generator seeded with 7) so every run sees the same splits.
function shuffled(items, seed) {
  const out = items.slice();
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2147483648;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
const order = shuffled(rows, 7);
const SPLITS = {
  train: order.slice(0, 20).map((r) => r.id),
  validation: order.slice(20, 40).map((r) => r.id),
  test: order.slice(40, 80).map((r) => r.id),
};
const byId = new Map(rows.map((r) => [r.id, r]));

function authorized(req) {
  if (!TOKEN) return true;
  const given = Buffer.from(req.headers.authorization || "");
  const wanted = Buffer.from(`Bearer ${TOKEN}`);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

function send(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

async function classify(row, inferenceUrl, inferenceToken) {
  const [sl, sw, pl, pw] = row.features;
  const messages = [
    { role: "system", content: SYSTEM_PROMPT },
    {
      role: "user",
      content: `Sepal length ${sl} cm, sepal width ${sw} cm, petal length ${pl} cm, petal width ${pw} cm.`,
    },
  ];
  const response = await fetch(`${inferenceUrl}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${inferenceToken}` },
    body: JSON.stringify({ model: "app", messages, temperature: 0, max_tokens: 48 }),
  });
  if (!response.ok) throw new Error(`the LM endpoint answered ${response.status}: ${await response.text()}`);
  const reply = (await response.json()).choices[0].message.content;
  return reply.trim();
}

async function rollout(body) {
  const row = byId.get(body.example_id);
  if (!row) return [404, { error: `no example ${JSON.stringify(body.example_id)}` }];
  try {
    const answer = await classify(row, body.inference_url, body.inference_token || "");
    const said = answer.toLowerCase().replace(/^iris[- ]/, "").replace(/[.!]$/, "");
    const score = said === row.label ? 1 : 0;
    const feedback = score
      ? `Correct: ${row.label}.`
      : `Wrong: the reply was ${JSON.stringify(answer)}; it must be exactly one word, one of ` +
        `${SPECIES.join(", ")}, and this flower is ${row.label}.`;
    return [200, { rollout_id: body.rollout_id, score, feedback, outputs: { answer } }];
  } catch (err) {
    return [200, { rollout_id: body.rollout_id, score: null, error: String(err) }];
  }
}

const server = createServer((req, res) => {
  if (!authorized(req)) return send(res, 401, { error: "a bearer token is required" });
  if (req.method === "GET" && req.url === "/health") return send(res, 200, { ok: true });
  if (req.method === "GET" && req.url === "/info") {
    return send(res, 200, {
      protocol: PROTOCOL,
      name: "iris-node",
      splits: SPLITS,
      components: { system_prompt: SYSTEM_PROMPT },
    });
  }
  if (req.method === "POST" && req.url === "/rollout") {
    let data = "";
    req.on("data", (chunk) => (data += chunk));
    req.on("end", async () => {
      let body;
      try {
        body = JSON.parse(data);
      } catch {
        return send(res, 400, { error: "the request is not JSON" });
      }
      if (body.protocol !== PROTOCOL) return send(res, 400, { error: `expected protocol ${PROTOCOL}` });
      const [status, answer] = await rollout(body);
      send(res, status, answer);
    });
    return;
  }
  send(res, 404, { error: `no route ${req.method} ${req.url}` });
});

server.listen(PORT, "127.0.0.1", () => {
  console.log(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` }));
});
