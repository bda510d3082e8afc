// Drive headless Chromium through the page test_pyodide_reload.py serves; print one JSON object.
// usage: node drive.cjs <base-url> <user-data-dir> <artifacts-dir>
// env: PLAYWRIGHT_CORE (path of the playwright-core package), CHROMIUM (the browser binary)
"use strict";
const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"];

async function main() {
  const [base, userDataDir, artifacts] = process.argv.slice(2);
  const result = { steps: [], requests: [], console: [] };
  const started = Date.now();
  const step = (name) => result.steps.push([name, Date.now() - started]);
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM, headless: true, args: FLAGS,
    viewport: { width: 900, height: 560 }, timeout: 30000,
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(40000);
    page.on("request", (request) => result.requests.push(request.url()));
    page.on("console", (message) => result.console.push(`${message.type()}: ${message.text()}`));
    page.on("pageerror", (error) => result.console.push(`pageerror: ${error}`));
    step("launched");
    await page.goto(base + "/index.html");
    result.first = await page.evaluate(() => window.clp.ready);
    result.first.navigation = await page.evaluate(() => performance.getEntriesByType("navigation")[0].type);
    step("first load hydrated");
    result.afterThree = await page.evaluate(() => window.clp.increment(3));
    result.storedBeforeReload = await page.evaluate(() => localStorage.getItem("clp:clp:counter"));
    await page.evaluate(() => { document.getElementById("page-load").textContent = "(first page load, before the reload)"; });
    await page.screenshot({ path: path.join(artifacts, "pyodide-before-reload.png") });
    step("incremented 3 times");

    await page.reload();
    result.second = await page.evaluate(() => window.clp.ready);
    result.second.navigation = await page.evaluate(() => performance.getEntriesByType("navigation")[0].type);
    step("reloaded and hydrated");
    result.afterOneMore = await page.evaluate(() => window.clp.increment(1));
    result.checks = await page.evaluate(() => window.clp.checks());
    result.localStorage = await page.evaluate(
      () => Object.fromEntries(Object.keys(localStorage).map((key) => [key, localStorage.getItem(key)])));
    await page.evaluate(() => { document.getElementById("page-load").textContent = "(after the reload: hydrated, then +1)"; });
    await page.screenshot({ path: path.join(artifacts, "pyodide-after-reload.png") });
    step("incremented once more");
  } catch (error) {
    result.error = String((error && error.stack) || error);
  } finally {
    await context.close();
  }
  return result;
}

main().then(
  (result) => process.stdout.write(JSON.stringify(result)),
  (error) => { process.stdout.write(JSON.stringify({ error: String((error && error.stack) || error) })); },
);
