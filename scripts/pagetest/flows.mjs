// Drives the parents' page in Debian's headless Chromium through the flows a
// parent uses, against ubusemu (the uhttpd/rpcd stand-in) and a real agent in
// a lab. scripts/e2e/page_test.go sets everything up and runs this; it reads
// the lines this prints ("PASS name: ..." / "FAIL name: ...").
//
// Environment:
//   FG_URL            the page, e.g. http://127.0.0.1:8080/famguard/
//   FG_SHOTS          directory for screenshots
//   FG_CHECK          a shell command printing "online" or "blocked" for a
//                     child: FG_CHECK alice (a real request from the child's
//                     namespace; "blocked" only on a real REJECT/RST)
//   FG_PARENT, FG_VIEWER, FG_OTHER   user:password of the three logins
//   FG_BEDTIME_CHILD  a child in bedtime now; FG_DAY_CHILD one online now
//   FG_UNKNOWN_MAC    a device on the LAN no profile lists
//   FG_STEP_CMD       shell command the test runs between phases: FG_STEP_CMD NAME
import { chromium } from "playwright-core";
import { execSync } from "node:child_process";

const env = process.env;
const url = env.FG_URL;
const shots = env.FG_SHOTS;
let failed = 0;

function report(ok, name, detail) {
  console.log(`${ok ? "PASS" : "FAIL"} ${name}: ${detail}`);
  if (!ok) failed++;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(child) { return execSync(`${env.FG_CHECK} ${child}`, { encoding: "utf8" }).trim(); }
function step(name) { if (env.FG_STEP_CMD) execSync(`${env.FG_STEP_CMD} ${name}`, { stdio: "inherit" }); }

// waitFor polls fn until it returns a truthy value or the deadline passes; it
// returns [value, milliseconds taken].
async function waitFor(fn, ms) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v || Date.now() - t0 > ms) return [v, Date.now() - t0];
    await sleep(50);
  }
}

function creds(s) { const i = s.indexOf(":"); return [s.slice(0, i), s.slice(i + 1)]; }

// rpc sends one hand-made JSON-RPC request, as a script or an attacker would.
async function rpc(body, raw) {
  const r = await fetch(new URL("/ubus", url), { method: "POST", headers: { "Content-Type": "application/json" },
    body: raw ? body : JSON.stringify(body) });
  return r.json();
}
async function login(user, pass) {
  const r = await rpc({ jsonrpc: "2.0", id: 1, method: "call", params: ["00000000000000000000000000000000", "session", "login", { username: user, password: pass }] });
  return r.result && r.result[0] === 0 ? r.result[1].ubus_rpc_session : null;
}
async function callAs(sid, method, args) {
  return rpc({ jsonrpc: "2.0", id: 2, method: "call", params: [sid, "famguard", method, args] });
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
try {
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: "en-GB", deviceScaleFactor: 1 });
  const page = await phone.newPage();
  const [parentUser, parentPass] = creds(env.FG_PARENT);

  // 1. A wrong password is refused, and the page says so.
  await page.goto(url);
  await page.fill("input[name=username]", parentUser);
  await page.fill("input[name=password]", parentPass + "x");
  await page.click("button[type=submit]");
  const [wrong] = await waitFor(async () => (await page.textContent("#login-error"))?.includes("Wrong"), 5000);
  report(!!wrong, "wrong-password", `page says: ${await page.textContent("#login-error")}`);

  // 2. A login without famguard's ACL: the page refuses it, and every write
  // method is refused by the endpoint (hand-made requests).
  const [otherUser, otherPass] = creds(env.FG_OTHER);
  await page.fill("input[name=username]", otherUser);
  await page.fill("input[name=password]", otherPass);
  await page.click("button[type=submit]");
  const [noAccess] = await waitFor(async () => (await page.textContent("#login-error"))?.includes("may not use famguard"), 5000);
  report(!!noAccess, "login-without-acl-page", `page says: ${await page.textContent("#login-error")}`);
  for (const [who, c] of [["other", env.FG_OTHER], ["viewer", env.FG_VIEWER]]) {
    const sid = await login(...creds(c));
    const writes = { pause: { child: env.FG_DAY_CHILD, minutes: 30 }, resume: { child: env.FG_DAY_CHILD },
      grant: { child: env.FG_DAY_CHILD, minutes: 15 }, budget: { child: env.FG_DAY_CHILD, add_minutes: 15 },
      assign: { mac: env.FG_UNKNOWN_MAC, to: "trusted" } };
    const refused = [];
    for (const [m, a] of Object.entries(writes)) {
      const r = await callAs(sid, m, a);
      if (r.error && r.error.code === -32002) refused.push(m);
    }
    report(refused.length === 5, `${who}-write-methods-refused`, `refused with "Access denied": ${refused.join(", ")}`);
  }

  // 3. The parent logs in and sees the children.
  await page.fill("input[name=username]", parentUser);
  await page.fill("input[name=password]", parentPass);
  await page.click("button[type=submit]");
  const day = `article[data-child="${env.FG_DAY_CHILD}"]`;
  const [seen] = await waitFor(async () => (await page.$(day)) && (await page.textContent(`${day} .state`)) === "Online", 10000);
  report(!!seen, "parent-sees-child-online", `${env.FG_DAY_CHILD}: ${seen ? "Online" : await page.textContent("body")}`);
  report(check(env.FG_DAY_CHILD) === "online", "child-really-online", `from ${env.FG_DAY_CHILD}'s namespace: ${check(env.FG_DAY_CHILD)}`);
  await page.screenshot({ path: `${shots}/phone-overview.png`, fullPage: true });

  // 4. Pause: the child's namespace loses the internet, then resume.
  const t0 = Date.now();
  await page.click(`${day} button.pause[data-minutes="30"]`);
  const [cut, cutMs] = await waitFor(() => check(env.FG_DAY_CHILD) === "blocked", 5000);
  report(!!cut, "pause-cuts-internet", `blocked ${Date.now() - t0} ms after the tap (first check at ${cutMs} ms)`);
  const [shown] = await waitFor(async () => (await page.textContent(`${day} .why`))?.startsWith("Paused until"), 5000);
  report(!!shown, "pause-shown", await page.textContent(`${day} .why`));
  await page.screenshot({ path: `${shots}/phone-paused.png`, fullPage: true });
  const t1 = Date.now();
  await page.click(`${day} button.resume`);
  const [back] = await waitFor(() => check(env.FG_DAY_CHILD) === "online", 5000);
  report(!!back, "resume-restores-internet", `online ${Date.now() - t1} ms after the tap`);

  // 5. Extra time during bedtime.
  const bed = `article[data-child="${env.FG_BEDTIME_CHILD}"]`;
  report(check(env.FG_BEDTIME_CHILD) === "blocked", "bedtime-child-offline", `before the grant: ${check(env.FG_BEDTIME_CHILD)}`);
  await page.click(`${bed} button.grant[data-minutes="15"]`);
  const [granted] = await waitFor(() => check(env.FG_BEDTIME_CHILD) === "online", 5000);
  report(!!granted, "grant-during-bedtime", `after +15: ${check(env.FG_BEDTIME_CHILD)}; page: ${await page.textContent(`${bed} .why`)}`);

  // 6. A new device: "this is ours (trusted)".
  const item = `li[data-mac="${env.FG_UNKNOWN_MAC}"]`;
  const [listed] = await waitFor(async () => !!(await page.$(item)), 10000);
  report(listed, "unknown-device-listed", listed ? await page.textContent(item) : "not listed");
  await page.screenshot({ path: `${shots}/phone-new-device.png`, fullPage: true });
  if (listed) {
    await page.click(`${item} button:has-text("This is ours")`);
    const [gone] = await waitFor(async () => !(await page.$(item)), 10000);
    report(gone, "assign-trusted", gone ? "the device left the new-devices list" : "still listed");
  }

  // 7. Bad input by hand: each refused with a message, nothing changed.
  const sid = await login(parentUser, parentPass);
  const bad = [
    ["pause", { child: "nobody", minutes: 30 }],
    ["pause", { child: env.FG_DAY_CHILD, minutes: -5 }],
    ["pause", { child: env.FG_DAY_CHILD, minutes: 0 }],
    ["pause", { child: env.FG_DAY_CHILD, minutes: 100000 }],
    ["grant", { child: env.FG_DAY_CHILD, minutes: 20000 }],
    ["assign", { mac: "not-a-mac", to: "trusted" }],
    ["assign", { mac: env.FG_UNKNOWN_MAC, to: "nobody" }],
  ];
  for (const [m, a] of bad) {
    const r = await callAs(sid, m, a);
    const msg = r.result && r.result[1] && r.result[1].error && r.result[1].error.message;
    report(!!msg, `bad-input ${m} ${JSON.stringify(a)}`, msg || JSON.stringify(r));
  }
  const big = await rpc('{"jsonrpc":"2.0","id":1,"method":"call","params":["' + sid + '","famguard","pause",{"child":"' + "a".repeat(70000) + '"}]}', true);
  report(!!big.error, "oversized-json", JSON.stringify(big).slice(0, 120));
  const broken = await rpc('{"jsonrpc":"2.0","id":1,"method":"call","params":[', true);
  report(!!broken.error, "malformed-json", JSON.stringify(broken));
  report(check(env.FG_DAY_CHILD) === "online", "bad-input-changed-nothing", `${env.FG_DAY_CHILD}: ${check(env.FG_DAY_CHILD)}`);

  // 8. Desktop width.
  const desk = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "ru-RU" });
  const dp = await desk.newPage();
  await dp.goto(url);
  await dp.fill("input[name=username]", parentUser);
  await dp.fill("input[name=password]", parentPass);
  await dp.click("button[type=submit]");
  const [ru] = await waitFor(async () => (await dp.$(day)) && (await dp.textContent(`${day} .state`)) === "В сети", 10000);
  report(!!ru, "russian-from-browser-language", ru ? "В сети" : await dp.textContent("body"));
  await dp.screenshot({ path: `${shots}/desktop-ru.png`, fullPage: true });

  // 9. The clock is not trusted: the banner (the test restarts the agent
  // with an untrusted clock between the phases).
  step("untrusted-clock");
  await page.reload();
  const [banner] = await waitFor(async () => !(await page.isHidden("#banner")) && (await page.textContent("#banner")).includes("clock"), 15000);
  report(!!banner, "clock-untrusted-banner", banner ? await page.textContent("#banner") : "no banner");
  await page.screenshot({ path: `${shots}/phone-clock-untrusted.png`, fullPage: true });
} catch (e) {
  report(false, "exception", e.stack);
} finally {
  await browser.close();
}
console.log(failed ? `${failed} FAILED` : "ALL PASSED");
process.exit(failed ? 1 : 0);
