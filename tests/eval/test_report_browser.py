"""The feature report in a real browser: headless Chromium loads it from disk (no server).

Uses the system's Chromium and chromedriver (Debian: `apt-get install chromium
chromium-driver`, which .ci/run does); Selenium is given both paths, so it never downloads a
browser. Without them the test is skipped and says why.
"""

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs the sae-kit CLI and a browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e .[dev])")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"no browser: {', '.join(missing)} missing; apt-get install chromium "
                    "chromium-driver (as .ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_report_opens_and_shows_a_feature(browser, report):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get((report / "index.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#features tbody tr")
    assert len(rows) == 128
    assert browser.find_elements(By.CSS_SELECTOR, "#density-histogram rect")

    # Sorting by max activation puts the strongest feature first; search narrows the rows.
    browser.find_element(By.XPATH, "//th[text()='max act.']").click()
    first = browser.find_element(By.CSS_SELECTOR, "#features tbody tr:not([hidden])")
    maxes = [float(r.find_elements(By.TAG_NAME, "td")[3].get_attribute("data-value"))
             for r in rows]
    assert float(first.find_elements(By.TAG_NAME, "td")[3].get_attribute("data-value")) == max(
        maxes)
    feature = first.find_element(By.TAG_NAME, "a").text

    browser.find_element(By.ID, "search").send_keys(feature)
    assert browser.find_element(By.ID, "shown").text != "128"

    first.find_element(By.TAG_NAME, "a").click()
    WebDriverWait(browser, 10).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#top-contexts .tok")))
    assert browser.find_element(By.CSS_SELECTOR, "#feature-body h2").text == f"Feature {feature}"
    shaded = [t for t in browser.find_elements(By.CSS_SELECTOR, "#top-contexts .tok")
              if t.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "")]
    assert shaded, "the tokens where the feature fires are shaded"
    assert browser.find_elements(By.CSS_SELECTOR, "#top-contexts .tok.centre")
    assert browser.find_elements(By.CSS_SELECTOR, "#activation-histogram rect")
    promoted = browser.find_elements(By.CSS_SELECTOR, "#promoted tr")
    assert len(promoted) == 11  # a header row and 10 tokens
    assert browser.find_elements(By.CSS_SELECTOR, "#suppressed tr")
    assert browser.find_elements(By.CSS_SELECTOR, "#quantiles .context")

    # A neighbour link opens that feature's panel (another data chunk may load).
    link = browser.find_element(By.CSS_SELECTOR, "#neighbours a")
    target = link.get_attribute("href").rsplit("#f", 1)[1]
    link.click()
    WebDriverWait(browser, 10).until(ec.text_to_be_present_in_element(
        (By.CSS_SELECTOR, "#feature-body h2"), f"Feature {target}"))
    assert _errors(browser) == []


def test_explanations_sort_by_score_and_show_in_the_panel(browser, report, tmp_path):
    """`sae-kit explain` against the loopback server, then the report: the detection column
    sorts, and the feature's panel shows its explanation and the held-out contexts scored."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    from tests.fake_llm import explain_a_copy

    copy = tmp_path / "report"
    explained = explain_a_copy(report, copy)
    best = max(explained, key=lambda f: f["detection"]["balanced_accuracy"])

    browser.get((copy / "index.html").as_uri())
    header = browser.find_element(By.XPATH, "//th[text()='detection']")
    column = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#features th")].index(
        "detection")
    header.click()
    first = browser.find_element(By.CSS_SELECTOR, "#features tbody tr:not([hidden])")
    top = float(first.find_elements(By.TAG_NAME, "td")[column].get_attribute("data-value"))
    assert top == pytest.approx(best["detection"]["balanced_accuracy"])
    feature = first.find_element(By.TAG_NAME, "a").text
    first.find_element(By.TAG_NAME, "a").click()
    WebDriverWait(browser, 10).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#explanation .explanation-text")))
    shown = browser.find_element(By.CSS_SELECTOR, "#explanation .explanation-text").text
    wanted = next(f for f in explained if str(f["index"]) == feature)
    assert shown == wanted["explanation"]
    assert "detection balanced accuracy" in browser.find_element(
        By.CSS_SELECTOR, "#explanation .scores").text
    assert browser.find_elements(By.CSS_SELECTOR, "#explanation table.detection tr")
    assert _errors(browser) == []


def test_importance_column_sorts_and_the_panel_shows_both_conventions(browser,
                                                                      importance_report):
    """`sae-kit features --importance`: sort the index by |KL attribution|, open the most
    important feature, and find its importance panel with the exact ablation beside it."""
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    rows = json.loads((importance_report / "summary.json").read_text())["features"]
    best = max(rows, key=lambda r: r["importance_kl"])
    browser.get((importance_report / "index.html").as_uri())
    assert len(browser.find_elements(By.CSS_SELECTOR, "#importance-table tbody tr")) == 4
    headings = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#features th")]
    browser.find_element(By.XPATH, "//th[text()='|KL attr.|']").click()
    first = browser.find_element(By.CSS_SELECTOR, "#features tbody tr:not([hidden])")
    column = headings.index("|KL attr.|")
    assert float(first.find_elements(By.TAG_NAME, "td")[column].get_attribute(
        "data-value")) == pytest.approx(best["importance_kl"])
    assert first.find_element(By.TAG_NAME, "a").text == str(best["index"])
    first.find_element(By.TAG_NAME, "a").click()
    WebDriverWait(browser, 10).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#importance-panel")))
    cells = {(r.get_attribute("data-convention"), r.get_attribute("data-metric")):
             [td.text for td in r.find_elements(By.TAG_NAME, "td")]
             for r in browser.find_elements(By.CSS_SELECTOR, "#importance-panel tr[data-metric]")}
    assert set(cells) == {(c, m) for c in ("spliced", "with_error") for m in ("kl", "ce")}
    assert all(v[5] != "—" for v in cells.values())  # the top feature was ablated exactly
    assert float(cells["spliced", "kl"][3]) == pytest.approx(best["importance_kl"], rel=2e-3)
    assert "among the top" in browser.find_element(By.CSS_SELECTOR, "#importance p").text
    effects = browser.find_elements(By.CSS_SELECTOR, "#context-effects .context.effect")
    assert len(effects) == 2 * len(browser.find_elements(By.CSS_SELECTOR, "#top-contexts .context"))
    assert "rest of window" in effects[0].text
    assert _errors(browser) == []


# Each text of an SVG whose box (after its transform) leaves the drawing, and each pair of
# axis labels that overlap: what a reader sees cut off or unreadable.
_LAYOUT = """
const svg = document.querySelector(arguments[0]), frame = svg.getBoundingClientRect();
const texts = Array.from(svg.querySelectorAll("text"));
const box = (t) => t.getBoundingClientRect();
const outside = texts.filter((t) => { const b = box(t); return b.width === 0 ||
  b.left < frame.left - 0.5 || b.right > frame.right + 0.5 ||
  b.top < frame.top - 0.5 || b.bottom > frame.bottom + 0.5; }).map((t) => t.textContent);
const overlapping = [];
for (const cls of ["xtick", "ytick"]) {
  const ticks = Array.from(svg.querySelectorAll(`text.${cls}`)).map(box);
  ticks.forEach((a, i) => ticks.slice(i + 1).forEach((b) => {
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
      overlapping.push(cls);
  }));
}
const ylabel = svg.querySelector("text.ylabel");
return {outside, overlapping, ylabel: ylabel ? ylabel.textContent : null,
        yticks: Array.from(svg.querySelectorAll("text.ytick")).map((t) => t.textContent),
        xticks: Array.from(svg.querySelectorAll("text.xtick")).map((t) => t.textContent)};
"""


def test_histograms_have_a_count_axis_and_every_label_inside(browser, report):
    """The index's density histogram and a feature's activation histogram: a labelled y axis
    with counts, and no tick or axis label cut off at the edges or drawn over another."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get((report / "index.html").as_uri())
    density = browser.execute_script(_LAYOUT, "#density-histogram")
    assert density["ylabel"] == "features"
    assert density["yticks"][0] == "0" and len(density["yticks"]) >= 2
    assert len(density["xticks"]) >= 2
    assert density["outside"] == [] and density["overlapping"] == []

    browser.find_element(By.XPATH, "//th[text()='max act.']").click()
    browser.find_element(By.CSS_SELECTOR, "#features tbody tr a").click()
    WebDriverWait(browser, 10).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#activation-histogram rect")))
    activation = browser.execute_script(_LAYOUT, "#activation-histogram")
    assert activation["ylabel"] == "firing tokens"
    assert activation["yticks"][0] == "0" and len(activation["yticks"]) >= 2
    assert len(activation["xticks"]) >= 2
    assert activation["outside"] == [] and activation["overlapping"] == []
    assert _errors(browser) == []


def test_every_index_column_has_a_heading(browser, report):
    """No blank heading in the index table; the token column says what it holds."""
    from selenium.webdriver.common.by import By

    browser.get((report / "index.html").as_uri())
    headings = browser.find_elements(By.CSS_SELECTOR, "#features thead th")
    cells = browser.find_elements(By.CSS_SELECTOR, "#features tbody tr:first-child td")
    assert len(headings) == len(cells) >= 5
    assert all(th.text.strip() for th in headings), [th.text for th in headings]
    tokens = next(th for th in headings if "token" in th.text)
    assert tokens.text == "promoted tokens (top 3)"
    assert "decoder direction" in tokens.get_attribute("title")
