// A person signing in on Palisade's sign-in page in headless Chromium, as
// a native app's browser window would show it: first a wrong password, then
// the right one, after which the browser follows the redirect to the
// client's listener (the test's), as the page's CSP allows.
//
//     node sign_in.mjs AUTHORIZE_URL USERNAME PASSWORD SCREENSHOT_DIR
//
// Prints one JSON object: what the person saw and where the browser went.

import { chromium } from "playwright-core";

const [authorizeUrl, username, password, screenshots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const seen = { console_errors: [] };
try {
  const page = await browser.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") seen.console_errors.push(message.text());
  });
  await page.goto(authorizeUrl);
  seen.title = await page.title();
  seen.labels = await page.locator("label").allTextContents();
  await page.screenshot({ path: `${screenshots}/sign-in.png`, fullPage: true });

  // Keyboard only: the user name field has the focus, Tab goes to the password.
  seen.focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  await page.keyboard.type(username);
  await page.keyboard.press("Tab");
  await page.keyboard.type("not the password at all");
  await page.keyboard.press("Enter");
  await page.waitForLoadState("load");
  seen.wrong_password_alert = await page.locator("[role=alert]").textContent();
  seen.username_kept = await page.locator("#username").inputValue();
  await page.screenshot({ path: `${screenshots}/sign-in-refused.png`, fullPage: true });

  seen.focused_after_refusal = await page.evaluate(() => document.activeElement && document.activeElement.id);
  await page.fill("#password", password);
  await Promise.all([
    page.waitForURL(/\/callback/, { timeout: 15000 }),
    page.click("button[type=submit]"),
  ]);
  seen.final_url = page.url();
  seen.final_text = await page.textContent("body");
} catch (error) {
  seen.error = String(error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
