// page_test.mjs - the page of `mnist serve` (web/index.html) in a real browser: Debian's
// Chromium, driven by playwright-core, against a running server.
//
// Usage: node page_test.mjs URL SCREENSHOT PHOTO LABEL
//   URL         the server, e.g. http://127.0.0.1:40123/
//   SCREENSHOT  where to save a PNG of the page with a recognised digit on it
//   PHOTO       a PNG of one digit to upload through the file input; LABEL is its class
//
// Checks: the page loads without console errors and asks no other host for anything; a 0, 1, 7
// and 4 drawn as strokes (mouse, touch and pen pointers) come back as the top class and the top
// bar, with requests throttled (timed on the page's clock); Clear (button, Escape, Delete, Tab +
// Enter) returns to the empty state; Undo (button and Ctrl+Z) removes an extra stroke and brings the 7 back;
// the controls are reached with Tab and show their focus; a photo chosen with the file input or
// dropped on the page is classified and shown; a server error lands in the status line; a late
// answer to an old drawing never replaces a newer one; at 360x740 (devicePixelRatio 2) the page
// does not scroll sideways, the pad is fully on screen and still goes out as a 280x280 PNG.
// Exits 1 with one line on the first failure.
//
// The page's hooks: #pad[data-version] changes with every edit; #result[data-version] says
// which edit the answer on screen belongs to, #result[data-state] is empty|busy|ready|error.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [url, screenshotPath, photoPath, photoLabel] = process.argv.slice(2);
if (!url || !screenshotPath || !photoPath || photoLabel === undefined) {
    console.error('usage: node page_test.mjs URL SCREENSHOT PHOTO LABEL');
    process.exit(2);
}
const origin = new URL(url).origin;

class Failure extends Error {}
function check(ok, message) {
    if (!ok) throw new Failure(message);
}

// Digits as strokes in pad units (a 280x280 square), written the way people draw them.
function ellipse(cx, cy, rx, ry, n) {
    const pts = [];
    for (let i = 0; i <= n + 2; i++) {   // a little past a full turn, so the loop closes
        const a = -Math.PI / 2 - (2 * Math.PI * i) / n;
        pts.push([cx + rx * Math.cos(a), cy + ry * Math.sin(a)]);
    }
    return pts;
}
const DIGITS = {
    0: [ellipse(140, 140, 58, 92, 36)],
    1: [[[150, 45], [146, 140], [142, 235]]],
    4: [[[165, 45], [85, 170], [215, 170]], [[170, 95], [170, 240]]],
    7: [[[80, 60], [200, 60], [165, 130], [125, 235]]],
};
// Drawn on top of the 7 for the undo check: a loop under the bar turns it into a 9.
const LOOP = [ellipse(130, 95, 55, 38, 24)];

const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const watchdog = setTimeout(() => {
    console.error('page_test: FAIL: gave up after 90 s');
    process.exit(1);
}, 90_000);

const problems = [];   // console errors, page errors, requests to other hosts
let expectedError = 0; // an HTTP status the current step provokes on purpose
const answers = [];    // "mouse 0 99%", ... for the last line

async function openPage(options) {
    const context = await browser.newContext(options);
    const page = await context.newPage();
    page.on('console', (m) => {
        if (m.type() !== 'error') return;
        // Chromium logs every 4xx reply as a console error. The response handler below judges
        // the replies of /api/predict.
        if (/status of \d+/.test(m.text()) && m.location().url.endsWith('/api/predict')) return;
        problems.push(`console error: ${m.text()}`);
    });
    page.on('response', async (r) => {
        if (!r.url().endsWith('/api/predict') || r.status() === 200) return;
        // Errors are fine where a step provokes them on purpose, and "no digit found" is a fair
        // answer to a stroke just begun.
        if (r.status() === expectedError) return;
        const body = await r.text().catch(() => '');
        if (r.status() === 400 && /no digit/i.test(body)) return;
        problems.push(`POST /api/predict: HTTP ${r.status()} ${body.slice(0, 120)}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => {
        const u = new URL(r.url());
        if (u.protocol !== 'data:' && u.protocol !== 'blob:' && u.origin !== origin)
            problems.push(`request to another host: ${r.url()}`);
    });
    const reply = await page.goto(url, { waitUntil: 'load' });
    check(reply && reply.ok(), `GET ${url}: HTTP ${reply && reply.status()}`);
    // The bars are built from /api/model's classes once it has answered.
    await page.waitForFunction(() => document.querySelector('#model-info').textContent.includes('parameters'),
                               null, { timeout: 10_000 });
    check(problems.length === 0, problems[0]);
    // Which kinds of pointer the pad saw, to prove the touch and pen strokes were real ones, and
    // the width x height of every PNG the page posts (from its IHDR chunk).
    await page.evaluate(() => {
        window.pointerTypes = [];
        document.querySelector('#pad').addEventListener('pointerdown', (e) => pointerTypes.push(e.pointerType));
        window.postedSizes = [];
        const fetchAsIs = window.fetch;
        window.fetch = async (resource, init) => {
            if (init && init.body instanceof Blob && init.body.type === 'image/png' && init.body.size >= 24) {
                const head = new DataView(await init.body.slice(0, 24).arrayBuffer());
                postedSizes.push(`${head.getUint32(16)}x${head.getUint32(20)}`);
            }
            return fetchAsIs(resource, init);
        };
    });
    return { context, page, cdp: await context.newCDPSession(page) };
}

// Pad units to page coordinates.
async function mapper(page) {
    const box = await page.locator('#pad').boundingBox();
    return ([x, y]) => [box.x + (x * box.width) / 280, box.y + (y * box.height) / 280];
}

// Points every ~6 pad units along a polyline, as a moving pointer reports them.
function densify(stroke) {
    const out = [stroke[0]];
    for (let i = 1; i < stroke.length; i++) {
        const [x0, y0] = stroke[i - 1], [x1, y1] = stroke[i];
        const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / 6));
        for (let k = 1; k <= n; k++) out.push([x0 + ((x1 - x0) * k) / n, y0 + ((y1 - y0) * k) / n]);
    }
    return out;
}

async function drawStrokes(t, strokes, kind) {
    const at = await mapper(t.page);
    for (const stroke of strokes) {
        const pts = densify(stroke).map(at);
        if (kind === 'mouse') {
            await t.page.mouse.move(...pts[0]);
            await t.page.mouse.down();
            for (const p of pts.slice(1)) await t.page.mouse.move(...p);
            await t.page.mouse.up();
        } else if (kind === 'touch') {
            const touch = ([x, y]) => [{ x, y, id: 1, radiusX: 4, radiusY: 4, force: 0.5 }];
            await t.cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: touch(pts[0]) });
            for (const p of pts.slice(1))
                await t.cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: touch(p) });
            await t.cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
        } else {   // pen, with varying pressure
            const pen = (type, [x, y], i) => t.cdp.send('Input.dispatchMouseEvent', {
                type, x, y, button: 'left', buttons: type === 'mouseReleased' ? 0 : 1, clickCount: 1,
                pointerType: 'pen', force: 0.5 + 0.3 * Math.sin(i / 4),
            });
            await pen('mousePressed', pts[0], 0);
            for (let i = 1; i < pts.length; i++) await pen('mouseMoved', pts[i], i);
            await pen('mouseReleased', pts[pts.length - 1], pts.length);
        }
    }
}

// Resolves to the "error" of the first reply of /api/predict with this status; null when none
// comes within 15 s.
function refusal(page, status) {
    return page.waitForResponse((r) => r.url().endsWith('/api/predict') && r.status() === status,
                                { timeout: 15_000 })
        .then((r) => r.json()).then((body) => String(body.error), () => null);
}

// Waits until the answer on screen belongs to the latest edit, then reads it.
async function settled(page, what) {
    try {
        await page.waitForFunction(() => {
            const r = document.querySelector('#result'), pad = document.querySelector('#pad');
            return r.dataset.version === pad.dataset.version && r.dataset.state !== 'busy';
        }, null, { timeout: 15_000 });
    } catch {
        throw new Failure(`${what}: no settled answer within 15 s`);
    }
    return page.evaluate(() => {
        const seen = document.querySelector('#seen');
        const px = seen.getContext('2d').getImageData(0, 0, 28, 28).data;
        let ink = 0;
        for (let i = 0; i < px.length; i += 4) ink += px[i];
        return {
            state: document.querySelector('#result').dataset.state,
            label: document.querySelector('#top-label').textContent.trim(),
            status: document.querySelector('#status').textContent.trim(),
            bars: [...document.querySelectorAll('#bars > [data-class]')].map((li) => ({
                cls: li.dataset.class, p: Number(li.dataset.p), top: li.classList.contains('top'),
                // in percent, as set: the drawn width follows after a short transition
                width: parseFloat(li.querySelector('.fill').style.width) || 0,
            })),
            ink,
            undo: !document.querySelector('#undo').disabled,
        };
    });
}

// Wraps the page's fetch to note, on the page's clock, when each /api/predict request goes out
// and how many were out at once (window.predictLog).
function logPredictRequests(page) {
    return page.evaluate(() => {
        const log = { since: performance.now(), starts: [], out: 0, mostOut: 0 };
        const fetchAnything = window.fetch;
        window.fetch = (input, init) => {
            if (!String(input).endsWith('api/predict')) return fetchAnything(input, init);
            log.starts.push(performance.now());
            log.mostOut = Math.max(log.mostOut, ++log.out);
            return fetchAnything(input, init).finally(() => log.out--);
        };
        window.predictLog = log;
    });
}

const THROTTLE_MS = 100;   // web/index.html: requests start at least this far apart

// The page starts a request (renders its PNG, then fetches) at most once per THROTTLE_MS, and
// only when none is out. The PNG takes a varying time, so two fetches may lie closer than that;
// but n of them cannot all have started within less than (n - 1) intervals of the log's start.
function checkThrottled(log, what) {
    const n = log.starts.length;
    check(n >= 1, `${what}: no predict request`);
    check(log.mostOut === 1, `${what}: ${log.mostOut} predict requests out at once`);
    const span = log.starts[n - 1] - log.since;
    // 1 ms for the coarsened clock of performance.now()
    check((n - 1) * THROTTLE_MS <= span + 1,
          `${what}: ${n} predict requests within ${span.toFixed(0)} ms`);
}

function expectAnswer(r, want, what) {
    check(r.state === 'ready', `${what}: state ${r.state}${r.status ? ` (${r.status})` : ''}, expected an answer`);
    const probs = r.bars.map((b) => `${b.cls}:${b.p.toFixed(2)}`).join(' ');
    check(r.label === String(want), `${what}: top label "${r.label}", expected "${want}" (${probs})`);
    check(r.bars.length === classes.length, `${what}: ${r.bars.length} bars for ${classes.length} classes`);
    const best = r.bars.reduce((a, b) => (b.p > a.p ? b : a));
    check(best.cls === String(want) && best.top, `${what}: the top bar is "${best.cls}", expected "${want}"`);
    check(r.bars.filter((b) => b.top).length === 1, `${what}: more than one bar marked top`);
    check(best.width > 0 && r.bars.every((b) => b.width <= best.width + 0.5), `${what}: bar lengths do not follow p`);
    const sum = r.bars.reduce((s, b) => s + b.p, 0);
    check(Math.abs(sum - 1) < 0.02, `${what}: probabilities sum to ${sum.toFixed(3)}`);
    check(r.ink > 0, `${what}: the model's 28x28 input (#seen) is blank`);
    answers.push(`${what} ${(100 * best.p).toFixed(0)}%`);
}

function expectEmpty(r, what) {
    check(r.state === 'empty', `${what}: state ${r.state}${r.status ? ` (${r.status})` : ''}, expected empty`);
    check(r.bars.every((b) => b.p === 0 && !b.top && b.width === 0), `${what}: bars not reset`);
    check(r.label === '?', `${what}: top label "${r.label}" after clearing`);
    check(r.ink === 0, `${what}: #seen still shows an image`);
    check(!r.undo, `${what}: Undo still enabled on an empty pad`);
}

let classes = [];
try {
    // ---- desktop: mouse and pen ---------------------------------------------------------------
    const desk = await openPage({ viewport: { width: 1000, height: 760 } });
    const { page } = desk;
    const model = await page.evaluate(() => fetch('api/model').then((r) => r.json()));
    classes = model.classes;
    check(Array.isArray(classes) && classes.length >= 2, '/api/model: no classes');
    const barClasses = await page.$$eval('#bars > [data-class]', (els) => els.map((e) => e.dataset.class));
    check(JSON.stringify(barClasses) === JSON.stringify(classes.map(String)),
          `bars ${barClasses.join(',')} do not match the model's classes ${classes.join(',')}`);
    expectEmpty(await settled(page, 'fresh page'), 'fresh page');

    // The 0 is one stroke of about 70 pointer moves: the page must not send one request per move.
    // The rule is timed (one request out at a time, starts at least THROTTLE_MS apart), so it is
    // checked on the page's own clock; a count would depend on how fast this machine moves.
    await logPredictRequests(page);
    await drawStrokes(desk, DIGITS[0], 'mouse');
    expectAnswer(await settled(page, 'mouse 0'), 0, 'mouse 0');
    checkThrottled(await page.evaluate(() => window.predictLog), 'mouse 0');

    await page.click('#clear');
    expectEmpty(await settled(page, 'after Clear'), 'after Clear');

    await drawStrokes(desk, DIGITS[4], 'pen');
    expectAnswer(await settled(page, 'pen 4'), 4, 'pen 4');
    await page.keyboard.press('Escape');
    expectEmpty(await settled(page, 'after Escape'), 'after Escape');

    // Undo: the 7, then a loop that turns it into something else, then Undo brings the 7 back.
    await drawStrokes(desk, DIGITS[7], 'mouse');
    expectAnswer(await settled(page, 'mouse 7'), 7, 'mouse 7');
    await drawStrokes(desk, LOOP, 'mouse');
    const looped = await settled(page, '7 with a loop');
    check(looped.state === 'ready' && looped.label !== '7',
          `7 with a loop: still "${looped.label}" (${looped.state}), so Undo would prove nothing`);
    answers.push(`7 with a loop ${looped.label}`);
    await page.click('#undo');
    expectAnswer(await settled(page, 'Undo'), 7, 'after Undo');
    await drawStrokes(desk, LOOP, 'mouse');
    check((await settled(page, 'loop again')).label !== '7', '7 with a loop, again: still 7');
    await page.keyboard.press('Control+Z');
    expectAnswer(await settled(page, 'Ctrl+Z'), 7, 'after Ctrl+Z');
    const types = await page.evaluate(() => pointerTypes);
    check(types.includes('pen') && types.includes('mouse'), `pointer types seen on the pad: ${types.join(',')}`);
    await page.screenshot({ path: screenshotPath, fullPage: true, animations: 'disabled' });

    // The keyboard alone: Tab reaches Undo, Clear and the file chooser, each showing its focus;
    // Enter on Clear clears.
    await page.evaluate(() => document.activeElement.blur());
    const focused = [];
    for (let i = 0; i < 8 && focused.length < 3; i++) {
        await page.keyboard.press('Tab');
        const f = await page.evaluate(() => {
            const el = document.activeElement;
            // The file input is hidden; its label is the visible button that shows the focus.
            const shown = el.id === 'file' ? document.querySelector('label[for=file]') : el;
            const style = getComputedStyle(shown);
            return { id: el.id, ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2 };
        });
        if (['undo', 'clear', 'file'].includes(f.id)) {
            check(f.ring, `keyboard: #${f.id} has focus but shows no focus ring`);
            focused.push(f.id);
        }
    }
    check(focused.join() === 'undo,clear,file', `keyboard: Tab reached ${focused.join(', ') || 'nothing'}`);
    await page.focus('#clear');
    await page.keyboard.press('Enter');
    expectEmpty(await settled(page, 'Enter on Clear'), 'Enter on Clear');

    // Upload: the photo replaces the drawing, is classified and shown as a thumbnail.
    await page.setInputFiles('#file', photoPath);
    const up = await settled(page, 'upload');
    expectAnswer(up, photoLabel, 'upload');
    const thumb = await page.evaluate(() => {
        const img = document.querySelector('#photo');
        return !img.closest('figure').hidden && img.complete && img.naturalWidth > 0;
    });
    check(thumb, 'upload: no thumbnail of the photo');
    await page.click('#clear');
    expectEmpty(await settled(page, 'clear after upload'), 'clear after upload');
    check(await page.evaluate(() => document.querySelector('#photo').closest('figure').hidden),
          'clear after upload: the thumbnail is still shown');

    // The same photo dropped on the page.
    const dropped = await page.evaluateHandle(async (b64) => {
        const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'digit.png', { type: 'image/png' }));
        return dt;
    }, readFileSync(photoPath).toString('base64'));
    await page.dispatchEvent('#pad', 'dragover', { dataTransfer: dropped });
    await page.dispatchEvent('#pad', 'drop', { dataTransfer: dropped });
    expectAnswer(await settled(page, 'drop'), photoLabel, 'drop');
    await page.keyboard.press('Delete');
    expectEmpty(await settled(page, 'Delete after drop'), 'Delete after drop');

    // A photo over the server's 1 MB limit (a big noisy PNG, as phone cameras make): refused
    // with 413, then sent again as a smaller copy.
    const big = Buffer.from(await page.evaluate(async (b64) => {
        const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
        const photo = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
        const c = document.createElement('canvas');
        c.width = c.height = 1400;
        const g = c.getContext('2d');
        g.drawImage(photo, 0, 0, c.width, c.height);
        const img = g.getImageData(0, 0, c.width, c.height);
        for (let i = 0; i < img.data.length; i++) if (i % 4 !== 3) img.data[i] += Math.random() * 12 - 6;
        g.putImageData(img, 0, 0);
        const png = await new Promise((resolve) => c.toBlob(resolve, 'image/png'));
        const out = new Uint8Array(await png.arrayBuffer());
        let bin = '';
        for (let i = 0; i < out.length; i += 0x8000) bin += String.fromCharCode(...out.subarray(i, i + 0x8000));
        return btoa(bin);
    }, readFileSync(photoPath).toString('base64')), 'base64');
    check(big.length > 1 << 20, `big photo: only ${big.length} bytes, not over the 1 MB limit`);
    expectedError = 413;
    const refused = refusal(page, 413);
    await page.setInputFiles('#file', { name: 'big.png', mimeType: 'image/png', buffer: big });
    expectAnswer(await settled(page, 'big photo'), photoLabel, `big photo (${(big.length / 1e6).toFixed(1)} MB)`);
    check(await refused !== null, 'big photo: the server did not refuse it with 413 first');
    expectedError = 0;

    // A server error (a file that is no image) shows the server's message in the status line.
    expectedError = 400;
    const rejected = refusal(page, 400);
    await page.setInputFiles('#file', { name: 'broken.png', mimeType: 'image/png',
                                        buffer: Buffer.from('not a PNG at all') });
    const broken = await settled(page, 'broken upload');
    const message = await rejected;
    check(message !== null, 'broken upload: no 400 reply');
    check(broken.state === 'error' && broken.status.includes(message),
          `broken upload: state ${broken.state}, status line "${broken.status}", server said "${message}"`);
    check(await page.getAttribute('#status', 'role') === 'status', '#status is not role=status');
    expectedError = 0;

    // Stale answers: the answer to a drawing, held back by the network, arrives after the answer
    // to the photo chosen after it, and must not replace it.
    let holding = true, held = 0, late = 0;
    await page.route('**/api/predict', async (route) => {
        if (!holding) return route.continue();
        held++;
        const response = await route.fetch();
        await new Promise((done) => setTimeout(done, 1500));
        await route.fulfill({ response }).catch(() => {});
        late++;
    });
    await drawStrokes(desk, DIGITS[1], 'mouse');
    holding = false;
    await page.setInputFiles('#file', photoPath);
    expectAnswer(await settled(page, 'photo after a slow drawing'), photoLabel, 'photo after a slow drawing');
    while (late < held) await new Promise((done) => setTimeout(done, 100));
    await page.waitForTimeout(200);
    const after = await page.evaluate(() => ({
        label: document.querySelector('#top-label').textContent.trim(),
        shown: document.querySelector('#result').dataset.version,
        latest: document.querySelector('#pad').dataset.version,
    }));
    check(held > 0, 'stale answers: no request was held back');
    check(after.shown === after.latest && after.label === String(photoLabel),
          `stale answers: the late answer to the drawing replaced the photo's ("${after.label}", ` +
          `answer for version ${after.shown} of ${after.latest})`);
    await page.unroute('**/api/predict');
    await desk.context.close();

    // ---- a phone: 360x740, two device pixels per CSS pixel, touch ---------------------------
    const phone = await openPage({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 2,
                                   isMobile: true, hasTouch: true });
    const layout = await phone.page.evaluate(() => {
        const r = document.querySelector('#pad').getBoundingClientRect();
        return { scroll: document.documentElement.scrollWidth, inner: innerWidth, innerH: innerHeight,
                 left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width,
                 backing: document.querySelector('#pad').width };
    });
    check(layout.scroll <= layout.inner, `360x740: page is ${layout.scroll} px wide, scrolls sideways`);
    check(layout.left >= 0 && layout.right <= layout.inner && layout.top >= 0 && layout.bottom <= layout.innerH,
          `360x740: pad at (${layout.left},${layout.top})-(${layout.right},${layout.bottom}), not fully visible`);
    check(layout.width >= 280, `360x740: pad only ${layout.width} px wide`);
    check(layout.backing >= 2 * layout.width - 2, `360x740: pad backing store ${layout.backing} px for ` +
          `${layout.width} CSS px at devicePixelRatio 2`);
    await drawStrokes(phone, DIGITS[1], 'touch');
    expectAnswer(await settled(phone.page, 'touch 1'), 1, 'touch 1');
    // The pad goes out as a 280x280 PNG whatever the device pixel ratio (here 2).
    const padSizes = await phone.page.evaluate(() => postedSizes);
    check(padSizes.length > 0 && padSizes.every((wh) => wh === '280x280'),
          `phone: the pad was posted as ${[...new Set(padSizes)].join(', ') || 'nothing'}, expected 280x280 PNGs`);
    const phoneTypes = await phone.page.evaluate(() => pointerTypes);
    check(phoneTypes.includes('touch'), `phone: pointer types seen on the pad: ${phoneTypes.join(',')}`);
    await phone.page.click('#clear');
    await drawStrokes(phone, DIGITS[7], 'touch');
    expectAnswer(await settled(phone.page, 'touch 7'), 7, 'touch 7');
    const scrolled = await phone.page.evaluate(() => document.documentElement.scrollWidth <= innerWidth);
    check(scrolled, '360x740: scrolls sideways with an answer shown');
    await phone.context.close();

    check(problems.length === 0, problems[0]);
    console.log(`page_test: ok: ${answers.join(', ')}; clear, errors, stale answers, 360x740 layout`);
} catch (err) {
    const reason = err instanceof Failure ? err.message : `${err.name}: ${err.message.split('\n')[0]}`;
    console.error(`page_test: FAIL: ${reason}`);
    process.exitCode = 1;
} finally {
    clearTimeout(watchdog);
    await browser.close();
}
