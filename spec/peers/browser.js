// spec/web_browser_spec.lua's browser: Debian's Chromium driven by
// playwright-core against the catcher's page. Mail is sent with Python's
// smtplib (spec/peers/send_mail.py) while the page is open; what the page
// showed is printed as one JSON line for the spec to check.
//   node browser.js PAGE_URL SMTP_PORT PYTHON LEAK_URL
// LEAK_URL is a server of the spec's that counts what reaches it: a
// hostile message's remote image and CSS point there.
const { chromium } = require("playwright-core");
const { execFileSync } = require("child_process");
const path = require("path");

const [url, smtpPort, python, leak] = process.argv.slice(2);
// the message goes on stdin: a 10 MiB one is too long for argv
const send = (fields) => execFileSync(python, [path.join(__dirname, "send_mail.py"), smtpPort],
                                      { input: JSON.stringify(fields), timeout: 30000 });
const out = {};

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(10000);
    out.dialogs = 0;
    page.on("dialog", async (d) => { out.dialogs++; await d.dismiss(); });
    // anything a message's script could reach in the page
    await page.addInitScript(() => {
      window.__pwned = [];
      window.addEventListener("message", (e) => window.__pwned.push(String(e.data)));
    });
    await page.goto(url);
    await page.waitForSelector("#empty:not([hidden])");
    await page.evaluate(() => { window.__loaded_once = true; });

    // 1. a message sent now appears without a reload
    send({ from: "Shop <shop@example.com>", to: "alice@example.net", subject: "Your invoice 42",
           text: "Invoice attached.", html: "<p>Hello <b id='who'>Alice</b>, your invoice.</p>" });
    await page.waitForSelector("#messages li >> text=Your invoice 42");
    out.appeared = await page.evaluate(() => window.__loaded_once === true);
    send({ from: "news@example.com", to: "alice@example.net", subject: "Weekly news", text: "news" });
    await page.waitForSelector("#messages li >> text=Weekly news");
    out.listed = await page.$$eval("#messages li .subj", (els) => els.map((e) => e.textContent));

    // 2. search
    await page.fill("#q", "subject:invoice");
    await page.waitForFunction(() => document.querySelectorAll("#messages li").length === 1);
    out.searched = await page.$$eval("#messages li .subj", (els) => els.map((e) => e.textContent));

    // 3. the HTML tab renders in the sandbox
    await page.click("#messages li >> text=Your invoice 42");
    await page.click("#tabs button[data-tab=html]");
    const frame = page.frameLocator("#pane iframe");
    out.html_text = await frame.locator("#who").textContent();
    out.sandbox = await page.getAttribute("#pane iframe", "sandbox");

    // 4. a message built to attack the page runs nothing
    await page.fill("#q", "");
    send({ from: "evil@example.com", to: "alice@example.net",
           subject: "<img src=x onerror=alert(1)>Hostile",
           text: "<script>alert(2)</script>",
           html: "<script>parent.postMessage('script ran','*');alert(3)</script>" +
                 "<img src=x onerror=\"parent.postMessage('onerror ran','*')\">" +
                 "<a id='js' href=\"javascript:parent.postMessage('link ran','*')\">click me</a>" +
                 "<svg onload=\"parent.postMessage('svg ran','*')\"></svg>" +
                 `<style>body{background:url(${leak}css)}</style><img src="${leak}img">` +
                 "<p id='hostile'>hostile body</p>" });
    await page.waitForSelector("#messages li >> text=Hostile");
    await page.click("#messages li >> text=Hostile");
    await page.click("#tabs button[data-tab=html]");
    const hf = page.frameLocator("#pane iframe");
    out.hostile_text = await hf.locator("#hostile").textContent();
    await hf.locator("#js").click().catch(() => {});
    await page.waitForTimeout(700);
    out.pwned = await page.evaluate(() => window.__pwned);
    out.subject_shown = await page.textContent("#subject");
    out.leaks_before = await (await fetch(`${leak}count`)).text();
    // remote images only when asked for
    await page.click("#remote");
    for (let i = 0; i < 50 && (await (await fetch(`${leak}count`)).text()) === "0"; i++)
      await page.waitForTimeout(100);
    out.leaks_after = await (await fetch(`${leak}count`)).text();
    out.subject_img = await page.$$eval("#subject img, #messages img", (els) => els.length);

    // 5. a 10 MiB line neither hangs the page nor the reader
    send({ from: "big@example.com", to: "alice@example.net", subject: "One long line",
           text: "y".repeat(10 * 1024 * 1024) });
    await page.waitForSelector("#messages li >> text=One long line", { timeout: 30000 });
    await page.click("#messages li >> text=One long line", { timeout: 30000 });
    await page.click("#tabs button[data-tab=text]", { timeout: 30000 });
    await page.waitForFunction(() => (document.querySelector("#pane pre") || {}).textContent?.length > 10000000,
                               null, { timeout: 30000 });
    const t0 = Date.now();
    out.responsive = await page.evaluate(() => 1 + 1) === 2;
    out.responsive_ms = Date.now() - t0;
    await page.click("#messages li >> text=Hostile");

    // 6. delete removes it
    await page.click("#delete");
    await page.waitForFunction(() => ![...document.querySelectorAll("#messages li .subj")]
                                      .some((e) => e.textContent.includes("Hostile")));
    out.after_delete = await page.$$eval("#messages li .subj", (els) => els.map((e) => e.textContent));
    out.reloads = await page.evaluate(() => performance.getEntriesByType("navigation").length);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.log(JSON.stringify({ error: String(e && e.stack || e), partial: out }));
  process.exit(1);
});
