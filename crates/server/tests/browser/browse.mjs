// The "browser" MSAL opens for an interactive sign-in ($BROWSER="node
// browse.mjs %s"): headless Chromium on Palisade's sign-in page, signing in
// as PALISADE_USERNAME with PALISADE_PASSWORD, then following the form_post
// answer to MSAL's listener on localhost. Writes what it saw, as JSON, to
// PALISADE_BROWSER_REPORT.
//
// Python's webbrowser waits for this command, while MSAL's listener waits
// for the browser: so the command starts the sign-in in a process of its own
// and returns at once.

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";

const [url, role] = process.argv.slice(2);
if (role !== "--signing-in") {
  const child = spawn(process.execPath, [process.argv[1], url, "--signing-in"], {
    detached: true,
    stdio: "ignore",
  });
  child.unref();
  process.exit(0);
}

const seen = { authorize_url: url, console_errors: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  // The test server's certificate is signed by a CA of the test's own.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") seen.console_errors.push(message.text());
  });
  await page.goto(url);
  seen.title = await page.title();
  await page.fill("#username", process.env.PALISADE_USERNAME);
  await page.fill("#password", process.env.PALISADE_PASSWORD);
  await Promise.all([
    page.waitForURL(/^http:\/\/localhost:\d+/, { timeout: 20000 }),
    page.click("button[type=submit]"),
  ]);
  seen.final_url = page.url();
  seen.final_text = (await page.textContent("body")).trim().slice(0, 300);
} catch (error) {
  seen.error = String(error);
} finally {
  writeFileSync(process.env.PALISADE_BROWSER_REPORT, JSON.stringify(seen));
  await browser.close();
}
