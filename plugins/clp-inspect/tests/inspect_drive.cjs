// Drive headless Chromium through `clp inspect`'s page for test_inspect_browser.py; print one JSON object.
// usage: node inspect_drive.cjs <base-url> <artifacts-dir>
// env: PLAYWRIGHT_CORE (path of the playwright-core package), CHROMIUM (the browser binary),
//      COMMIT_COMMAND (JSON array: the command that commits one more event, in another process)
"use strict";
const path = require("path");
const { execFile } = require("child_process");
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"];

function run(command) {
  return new Promise((resolve, reject) => {
    execFile(command[0], command.slice(1), { timeout: 60000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

async function main() {
  const [base, artifacts] = process.argv.slice(2);
  const commit = JSON.parse(process.env.COMMIT_COMMAND);
  const result = { steps: [], requests: [], console: [], dialogs: [] };
  const started = Date.now();
  const step = (name) => result.steps.push([name, Date.now() - started]);
  const shot = (page, name) => page.screenshot({ path: path.join(artifacts, name) });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, headless: true, args: FLAGS,
                                          timeout: 30000 });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on("request", (request) => result.requests.push(request.url()));
    page.on("console", (message) => result.console.push(`${message.type()}: ${message.text()}`));
    page.on("pageerror", (error) => result.console.push(`pageerror: ${error}`));
    page.on("response", (response) => {
      if (response.status() >= 400) result.console.push(`http: ${response.status()} ${response.url()}`);
    });
    page.on("dialog", (dialog) => { result.dialogs.push(dialog.message()); dialog.dismiss().catch(() => {}); });
    const rows = () => page.$$eval("#timeline tbody tr", (trs) => trs.map((tr) => ({
      kind: tr.className.replace("row ", "").replace(" selected", ""), seq: tr.dataset.seq || null,
      selected: tr.classList.contains("selected"), text: tr.innerText })));
    const stateView = () => page.evaluate(() => {
      const view = document.querySelector("#state-view");
      const diff = [...view.querySelectorAll("table.diff tbody tr")].map((tr) => [...tr.cells].map((td) => td.innerText));
      return { seq: Number(view.dataset.seq), state: JSON.parse(document.querySelector("#state-json").textContent), diff,
               slider: Number(document.querySelector("#seq-slider").value),
               sliderMax: Number(document.querySelector("#seq-slider").max),
               output: document.querySelector("#seq-out").textContent, url: location.pathname + location.search };
    });
    step("launched");

    // the aggregates of the store
    await page.goto(base);
    result.aggregates = await page.$$eval("#aggregates li .agg-key", (els) => els.map((el) => el.textContent));
    await page.click("main table a");
    await page.waitForSelector("#timeline tbody tr");
    await page.waitForSelector('#conn[data-state="on"]'); // the event stream is open
    await page.evaluate(() => { window.__clpInspectMarker = "set before the commit"; });
    result.timeline = await rows();
    result.latest = await stateView();
    result.title = await page.title();
    await shot(page, "inspect-timeline.png");
    step("timeline shown");

    // a row click, then the slider, go back in time
    await page.click('#timeline tr[data-seq="2"] td.payload');
    await page.waitForSelector('#state-view[data-seq="2"]');
    await page.waitForFunction((n) => document.querySelector("#seq-out").textContent.startsWith(n + " /"), "2");
    result.atTwo = await stateView();
    await page.focus("#seq-slider");
    await page.keyboard.press("ArrowLeft");
    await page.waitForSelector('#state-view[data-seq="1"]');
    await page.waitForFunction((n) => document.querySelector("#seq-out").textContent.startsWith(n + " /"), "1");
    result.atOne = await stateView();
    result.selectedAfterSlider = (await rows()).filter((r) => r.selected).map((r) => r.seq);
    await shot(page, "inspect-earlier-state.png");
    step("moved to earlier events");

    // another OS process commits: the new event arrives without a reload
    const committedAt = Date.now();
    result.commitOutput = (await run(commit)).trim();
    await page.waitForSelector('#timeline tr[data-seq="4"]', { timeout: 15000 });
    result.arrivalMs = Date.now() - committedAt;
    await page.waitForFunction(() => document.querySelector("#seq-slider").max === "4");
    // the committing runtime published live data too: the live panel lists it
    await page.waitForFunction(() => document.querySelectorAll("#live .runtime").length === 2);
    result.afterCommit = { timeline: await rows(), view: await stateView(),
                           marker: await page.evaluate(() => window.__clpInspectMarker || null),
                           navigations: await page.evaluate(() => performance.getEntriesByType("navigation").length),
                           eventCount: await page.textContent("#event-count"),
                           live: await page.innerText("#live") };
    await shot(page, "inspect-new-event.png");
    step("new event arrived");

    // denials, filtered; the denying guard highlighted
    await page.click("#timeline .filter.f-denials");
    await page.waitForSelector('#timeline[data-show="denials"]');
    result.denials = { rows: await rows(),
                       denied: await page.$$eval("#timeline .guard.denied", (els) => els.map((el) => el.textContent)),
                       deniedColor: await page.$eval("#timeline .guard.denied",
                                                     (el) => getComputedStyle(el).backgroundColor) };
    await shot(page, "inspect-denials.png");
    await page.click("#timeline .filter.f-all");
    await page.waitForSelector('#timeline[data-show="all"]');
    step("filtered");

    // back to the latest event, with the button
    await page.click("#seq-latest");
    await page.waitForSelector('#state-view[data-seq="4"]');
    await page.waitForFunction((n) => document.querySelector("#seq-out").textContent.startsWith(n + " /"), "4");
    result.backToLatest = await stateView();

    // untrusted text renders as text
    result.escaping = await page.evaluate(() => ({
      payload: document.querySelector('#timeline tr[data-seq="2"] td.payload').innerText,
      staged: [...document.querySelectorAll("#live dd.staged")].map((dd) => dd.innerText).join("\n"),
      scripts: [...document.querySelectorAll("script")].map((s) => s.getAttribute("src")),
      images: document.querySelectorAll("img").length,
    }));
    await page.waitForTimeout(300); // a dialog, had one fired, would have been seen by now
    step("checked escaping");
  } catch (error) {
    result.error = String((error && error.stack) || error);
  } finally {
    await browser.close();
  }
  return result;
}

main().then(
  (result) => process.stdout.write(JSON.stringify(result)),
  (error) => { process.stdout.write(JSON.stringify({ error: String((error && error.stack) || error) })); },
);
