// The console in a real browser (Debian's Chromium driven by playwright-core), run by
// tests/test_console.py: a publisher page whose fake microphone plays an English WAV, a subscriber
// page that hears the Spanish track and cannot publish. Prints one JSON line with what it saw.
import { chromium } from "playwright-core";

const options = JSON.parse(process.argv[2]); // {url, clientId, secret, wav, screenshot, userDataDir}
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  `--use-file-for-fake-audio-capture=${options.wav}`,
];

const context = await chromium.launchPersistentContext(options.userDataDir, {
  executablePath: "/usr/bin/chromium", headless: true, args: FLAGS, viewport: { width: 1280, height: 900 },
});
const result = {};
const logs = [];
try {
  async function signIn() {
    const page = await context.newPage();
    page.on("console", (message) => logs.push(`${message.type()}: ${message.text()}`.slice(0, 300)));
    page.on("pageerror", (error) => logs.push(`pageerror: ${error.message}`));
    await page.goto(options.url);
    await page.fill("#client-id", options.clientId);
    await page.fill("#client-secret", options.secret);
    await page.click("#signin button[type=submit]");
    await page.waitForSelector("#workspace:not([hidden])", { timeout: 15000 });
    return page;
  }

  const publisher = await signIn();
  await publisher.click("#create button[type=submit]");
  const row = publisher.locator("#sessions tbody tr").first();
  await row.waitFor({ timeout: 30000 });
  result.session = await row.getAttribute("data-session");
  const sessionRow = (page) => page.locator(`#sessions tbody tr[data-session="${result.session}"]`);
  for (let i = 0; i < 120; i++) { // until its worker is ready
    if ((await sessionRow(publisher).locator("td").nth(2).textContent()) === "ready") break;
    await publisher.waitForTimeout(1000);
    await publisher.click("#refresh");
  }
  await sessionRow(publisher).locator("[data-action=join-publisher]").click();
  await publisher.waitForFunction(() => document.querySelector("#joined-state").textContent === "in the room");
  await publisher.waitForFunction(() => document.querySelector("#permissions").textContent.includes("write"));

  const subscriber = await signIn();
  await sessionRow(subscriber).locator("[data-action=join-subscriber]").click();
  await subscriber.waitForFunction(() => document.querySelector("#permissions").textContent.length > 0);
  result.subscriberPermissions = await subscriber.textContent("#permissions");
  result.subscriberControls = {
    microphone: await subscriber.isDisabled("#microphone"), end: await subscriber.isDisabled("#end"),
    setLanguages: await subscriber.isDisabled("#set-languages"),
  };

  await publisher.click("#microphone"); // the fake microphone starts playing the WAV
  await publisher.waitForFunction(() => [...document.querySelectorAll("#transcripts .heard")]
    .some((cell) => !cell.classList.contains("partial") && cell.textContent.trim().length > 0), null, { timeout: 90000 });
  result.english = await publisher.$$eval("#transcripts .heard", (cells) => cells.map((c) => c.textContent));

  await subscriber.waitForFunction(() => [...document.querySelectorAll('#transcripts [data-language="es"]')]
    .some((line) => line.textContent.length > 4), null, { timeout: 60000 });
  result.spanish = await subscriber.$$eval('#transcripts [data-language="es"]', (lines) => lines.map((l) => l.textContent));
  await subscriber.waitForFunction(() => Number(document.querySelector('[data-track="translation_es"]')?.dataset.peak || 0) > 0.01,
    null, { timeout: 30000 });
  result.peak = Number(await subscriber.getAttribute('[data-track="translation_es"]', "data-peak"));
  result.latency = await subscriber.$$eval("#transcripts .latency", (cells) => cells.map((c) => c.textContent).filter(Boolean));

  await subscriber.evaluate(() => window.lingoConsole.speak()); // publishing with a subscriber token
  await subscriber.waitForFunction(() => [...document.querySelectorAll("#messages .error")]
    .some((line) => line.textContent.startsWith("microphone")), null, { timeout: 20000 });
  result.refusal = await subscriber.textContent("#messages .error");

  await publisher.screenshot({ path: options.screenshot, fullPage: true });
  result.ok = true;
} catch (error) {
  result.ok = false;
  result.error = String(error).slice(0, 2000);
  result.logs = logs.slice(-40);
} finally {
  await context.close();
}
console.log(JSON.stringify(result));
