// The Node peer of bench/compare.py: sqs-consumer draining a queue into better-sqlite3.
//
// The same work as the reference loop floor_persist.py: CONCURRENCY consumers, each receiving
// up to ten messages at a time; per received batch, one transaction of
// INSERT OR IGNORE (request id, body) (the message id when the body has no request id), then
// sqs-consumer deletes the batch. WAL, with the given synchronous setting (FULL by default, as
// the worker's store). It stops, as floor_persist does, once the queue has answered empty twice
// in a row.
//
// With COMPARE_WINDOW set to a path, it writes there its drain window as bench/compare_probe.py
// does for the Python variants: the monotonic clock, the process's CPU time and its system part
// when the first ReceiveMessage starts and when the last delete returns, and the count deleted.
//
// usage: node peer.mjs ENDPOINT QUEUE_URL CONCURRENCY DB_PATH [SYNCHRONOUS]
import { writeFileSync } from "node:fs";
import { SQSClient } from "@aws-sdk/client-sqs";
import Database from "better-sqlite3";
import { Consumer } from "sqs-consumer";

const [endpoint, queueUrl, concurrency, dbPath, synchronous = "FULL"] = process.argv.slice(2);
if (!dbPath || !["FULL", "NORMAL", "OFF", "EXTRA"].includes(synchronous.toUpperCase())) {
  console.error("usage: node peer.mjs ENDPOINT QUEUE_URL CONCURRENCY DB_PATH [SYNCHRONOUS]");
  process.exit(2);
}

const db = new Database(dbPath);
db.pragma("journal_mode = WAL");
db.pragma(`synchronous = ${synchronous.toUpperCase()}`);
db.exec("CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, body TEXT NOT NULL)");
const insert = db.prepare("INSERT OR IGNORE INTO records VALUES (?, ?)");
const insertAll = db.transaction((rows) => {
  for (const [key, body] of rows) insert.run(key, body);
});

function recordKey(message) {
  try {
    return JSON.parse(message.Body).requestContext.requestId ?? message.MessageId;
  } catch {
    return message.MessageId;
  }
}

const sqs = new SQSClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
});

const window = { deleted: 0 };
function mark() {
  const cpu = process.cpuUsage();
  return [Number(process.hrtime.bigint()) / 1e9, (cpu.user + cpu.system) / 1e6, cpu.system / 1e6];
}
const send = sqs.send.bind(sqs);
sqs.send = async (command, options) => {
  const operation = command.constructor.name;
  if (operation === "ReceiveMessageCommand" && window.start === undefined) window.start = mark();
  const result = await send(command, options);
  if (operation === "DeleteMessageBatchCommand") {
    window.end = mark();
    window.deleted += result.Successful?.length ?? 0;
  } else if (operation === "DeleteMessageCommand") {
    window.end = mark();
    window.deleted += 1;
  }
  return result;
};

let empty = 0;
let failed = false;
const consumers = [];
const stopped = [];

function stopAll() {
  for (const consumer of consumers) consumer.stop();
}

for (let i = 0; i < Number(concurrency); i += 1) {
  const consumer = Consumer.create({
    sqs,
    queueUrl,
    batchSize: 10,
    waitTimeSeconds: 1,
    attributeNames: ["All"],
    messageAttributeNames: ["All"],
    // stop() waits for a receive in flight, and the batch it brings, before "stopped".
    pollingCompleteWaitTimeMs: 30000,
    handleMessageBatch: async (messages) => {
      insertAll(messages.map((message) => [recordKey(message), message.Body]));
      return messages;
    },
  });
  consumer.on("response_processed", () => {
    empty = 0;
  });
  consumer.on("empty", () => {
    empty += 1;
    if (empty >= 2) stopAll();
  });
  for (const event of ["error", "processing_error", "timeout_error"]) {
    consumer.on(event, (error) => {
      console.error(`peer: ${event}: ${error.message}`);
      failed = true;
      stopAll();
    });
  }
  stopped.push(new Promise((resolve) => consumer.on("stopped", resolve)));
  consumers.push(consumer);
}

for (const consumer of consumers) consumer.start();
await Promise.all(stopped);
const { count } = db.prepare("SELECT count(*) AS count FROM records").get();
db.close();
sqs.destroy();
if (process.env.COMPARE_WINDOW) writeFileSync(process.env.COMPARE_WINDOW, JSON.stringify(window));
console.log(JSON.stringify({ stored: count, deleted: window.deleted }));
process.exit(failed ? 1 : 0);
