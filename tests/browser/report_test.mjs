// report_test.mjs - the pages of `mnist report` and `mnist compare` in a real browser: Debian's
// Chromium, driven by playwright-core, opening the files directly (file://), as someone would
// who got one by mail.
//
// Usage: node report_test.mjs REPORT.html COMPARE.html OUTDIR
// Checks, for each page: it loads with no console error or page error and asks for nothing but
// itself (no script, font, style sheet or image from anywhere, data: URIs aside); every image
// decodes; every chart has drawn marks of non-zero size. The report has each of its sections,
// and its heatmap as many cells as classes squared; the compare page a leaderboard row per
// entry. Saves OUTDIR/report-page.png and OUTDIR/compare-page.png (whole pages) and
// OUTDIR/report-top.png (the first screen, 1000x900). Exits 1 with one line on the first failure.
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const [reportPath, comparePath, outDir] = process.argv.slice(2);
if (!reportPath || !comparePath || !outDir) {
    console.error('usage: node report_test.mjs REPORT.html COMPARE.html OUTDIR');
    process.exit(2);
}

class Failure extends Error {}
function check(ok, message) {
    if (!ok) throw new Failure(message);
}

const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const watchdog = setTimeout(() => {
    console.error('report_test: FAIL: gave up after 60 s');
    process.exit(1);
}, 60_000);

// Opens a page file; returns the page and the list of problems seen while it loaded.
async function open(path, viewport) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    const problems = [];
    const self = pathToFileURL(path).href;
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => {
        const u = r.url();
        if (!u.startsWith('data:') && u.split('#')[0] !== self) problems.push(`request for ${u}`);
    });
    await page.goto(self, { waitUntil: 'load' });
    return { context, page, problems };
}

// Every <img> decoded, every chart with marks that have a size.
async function checkDrawn(page, what) {
    const imgs = await page.$$eval('img', (els) => els.map((i) => i.complete && i.naturalWidth > 0));
    check(imgs.every(Boolean), `${what}: ${imgs.filter((ok) => !ok).length} of ${imgs.length} images did not decode`);
    const charts = await page.$$eval('svg.chart', (els) => els.map((svg) => {
        const box = svg.getBoundingClientRect();
        const marks = svg.querySelectorAll('polyline, circle, rect[data-v], rect.cell');
        const sized = [...marks].filter((m) => { const b = m.getBBox(); return b.width > 0 || b.height > 0; });
        return { w: box.width, h: box.height, marks: marks.length, sized: sized.length };
    }));
    check(charts.length > 0, `${what}: no charts`);
    charts.forEach((c, i) => {
        check(c.w > 100 && c.h > 100, `${what}: chart ${i + 1} is ${c.w}x${c.h}`);
        check(c.marks > 0 && c.sized === c.marks, `${what}: chart ${i + 1} has ${c.sized} of ${c.marks} marks drawn`);
    });
    return { images: imgs.length, charts: charts.length };
}

try {
    const report = await open(reportPath, { width: 1000, height: 900 });
    const ids = await report.page.$$eval('h2[id]', (els) => els.map((e) => e.id));
    for (const id of ['summary', 'model', 'curves', 'confusion', 'per-class', 'mistakes', 'examples', 'filters'])
        check(ids.includes(id), `report: no section #${id} (has ${ids.join(', ')})`);
    const cells = await report.page.$$eval('svg.heatmap', (els) => els.map((s) => s.querySelectorAll('rect.cell').length));
    check(cells.length === 2 && cells.every((n) => n === 100), `report: heatmap cells ${cells.join(', ')}, expected 100 and 100`);
    const r = await checkDrawn(report.page, 'report');
    await report.page.screenshot({ path: `${outDir}/report-top.png` });
    await report.page.screenshot({ path: `${outDir}/report-page.png`, fullPage: true });
    check(report.problems.length === 0, `report: ${report.problems[0]}`);
    await report.context.close();

    const compare = await open(comparePath, { width: 1000, height: 900 });
    const rows = await compare.page.$$eval('table.leaderboard tr[data-entry]', (els) => els.length);
    check(rows > 0, 'compare: no leaderboard rows');
    const c = await checkDrawn(compare.page, 'compare');
    await compare.page.screenshot({ path: `${outDir}/compare-page.png`, fullPage: true });
    check(compare.problems.length === 0, `compare: ${compare.problems[0]}`);
    await compare.context.close();
    console.log(`report_test: ok: report ${r.charts} charts, ${r.images} images; compare ${rows} entries, ${c.charts} chart`);
} catch (err) {
    const reason = err instanceof Failure ? err.message : `${err.name}: ${err.message.split('\n')[0]}`;
    console.error(`report_test: FAIL: ${reason}`);
    process.exitCode = 1;
} finally {
    clearTimeout(watchdog);
    await browser.close();
}
