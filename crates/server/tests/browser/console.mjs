// The web console in headless Chromium, as its people use it: a responder
// signs in at `/`, filters the machine table, tags a machine, isolates it and
// watches the action reach Succeeded, then signs out; a reader sees no
// isolate button, and their forged posts are refused.
//
//     node console.mjs ORIGIN USER PASSWORD READER READER_PASSWORD NAME_PREFIX SCREENSHOT_DIR
//
// Prints one JSON object: what each person saw.

import { chromium } from "playwright-core";

const [origin, user, password, reader, readerPassword, prefix, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const seen = { console_errors: [] };

async function signIn(page, name, secret) {
  await page.goto(`${origin}/`);
  seen.sign_in_title = await page.title();
  await page.fill("#username", name);
  await page.fill("#password", secret);
  await Promise.all([page.waitForURL(/\/console\/machines/), page.click("button[type=submit]")]);
}

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") seen.console_errors.push(m.text()); });
  await signIn(page, user, password);
  seen.machines_title = await page.title();
  seen.signed_in_user = await page.textContent("#signed-in-user");
  await page.screenshot({ path: `${shots}/machines.png`, fullPage: true });

  // Filter by name, from the keyboard.
  await page.focus("input[name=name]");
  await page.keyboard.type(prefix);
  await Promise.all([page.waitForLoadState("load"), page.keyboard.press("Enter")]);
  await page.waitForURL(/name=/);
  seen.filtered = await page.locator("#machines tbody tr td:nth-child(2)").allTextContents();
  seen.count_text = await page.textContent("#machine-count");

  // A machine's page: tag it.
  await Promise.all([page.waitForURL(/\/console\/machines\/[^/?]+$/), page.locator("#machines tbody a").first().click()]);
  seen.machine_url = page.url();
  await page.fill("#new-tag", "Investigate");
  await Promise.all([page.waitForLoadState("load"), page.click("text=Add tag")]);
  seen.tags = await page.locator("ul.tags .tag").allTextContents();

  // Isolate it, with a comment and a confirmation; watch the timeline.
  await Promise.all([page.waitForURL(/\/isolate$/), page.click("a.button:text-is('Isolate')")]);
  seen.confirm_title = await page.title();
  await page.fill("#comment", "Isolated from the console");
  await Promise.all([page.waitForURL(/\/console\/machines\/[^/]+#timeline$/), page.click("button[type=submit]:has-text('Confirm')")]);
  await page.waitForFunction(() => document.querySelector("#machine-actions").textContent.includes("Succeeded"), null, { timeout: 20000 });
  seen.timeline = await page.textContent("#machine-actions");
  await page.screenshot({ path: `${shots}/machine.png`, fullPage: true });
  await page.goto(`${origin}/console/actions`);
  seen.actions = await page.textContent("#all-actions");
  await page.screenshot({ path: `${shots}/actions.png`, fullPage: true });

  // Sign out: the console asks for a sign-in again.
  await Promise.all([page.waitForLoadState("load"), page.click("text=Sign out")]);
  seen.signed_out = await page.textContent("[role=status]");
  await page.goto(`${origin}/console/machines`);
  seen.after_sign_out_title = await page.title();
  await context.close();

  // A reader: no isolate button, no tag form; forged posts refused.
  const readerContext = await browser.newContext();
  const readerPage = await readerContext.newPage();
  readerPage.on("console", (m) => { if (m.type() === "error") seen.console_errors.push(m.text()); });
  await signIn(readerPage, reader, readerPassword);
  await readerPage.goto(seen.machine_url);
  seen.reader_buttons = await readerPage.locator("ul.buttons a").allTextContents();
  seen.reader_tag_forms = await readerPage.locator("#new-tag").count();
  seen.reader_bulk = await readerPage.goto(`${origin}/console/machines`).then(() => readerPage.locator("fieldset.bulk").count());
  await readerPage.screenshot({ path: `${shots}/reader.png`, fullPage: true });
  const isolate = `${seen.machine_url}/isolate`;
  seen.forged = await readerPage.evaluate(async (isolate) => {
    const csrf = document.querySelector("input[name=csrf_token]").value;
    const post = async (body) => {
      const answer = await fetch(isolate, { method: "POST", body: new URLSearchParams(body) });
      return { status: answer.status, text: await answer.text() };
    };
    return {
      without_token: await post({ Comment: "forged" }),
      with_own_token: await post({ csrf_token: csrf, Comment: "forged" }),
    };
  }, isolate);
  await readerContext.close();
} catch (error) {
  seen.error = String(error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
