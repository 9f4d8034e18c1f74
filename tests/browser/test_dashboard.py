"""The dashboard in headless Chromium, against the real server (see tests/browser.rs).

Tests run in file order; the browser call comes last because it adds a candidate.
"""

import random
import re
import time

import pytest
from playwright.sync_api import expect

SMITH = re.compile("smith", re.I)


def unique_phone():
    return "+1555" + "".join(random.choice("0123456789") for _ in range(7))


def test_sign_in_and_create_a_receptionist_in_four_steps(new_page, env):
    p = new_page()
    p.open()
    p.fill("input[name=api_key]", "rx_live_not_a_key")
    p.click("button[type=submit]")
    expect(p.locator(".signin .field-error")).to_contain_text("not valid")
    p.shot("sign-in")
    p.fill("input[name=api_key]", env.admin_key)
    p.click("button[type=submit]")
    # the workspace's name has markup in it: shown as text
    expect(p.locator(".topbar .workspace")).to_have_text("Acme <b>Staffing</b>")
    # the key is in this tab's sessionStorage only, never in the URL
    assert env.admin_key not in p.url
    assert p.evaluate("sessionStorage.getItem('receptionist.apiKey')") == env.admin_key
    assert p.evaluate("localStorage.length") == 0
    p.reload()
    expect(p.locator(".topbar .workspace")).to_be_visible()

    p.route("receptionists")
    p.get_by_role("link", name="New receptionist").click()
    # 1. basic information, with a phone number the API refuses
    p.fill("input[name=phone_number]", "555-0100")
    p.fill("input[name=agent_name]", "Maya")
    p.select_option("select[name=voice]", "kal16")
    p.fill("textarea[name=intro_message]", "Hi, I'm Maya from Acme. Thanks for calling about our driver jobs.")
    p.check("input[name=language_mode][value=multilingual]")
    p.get_by_role("button", name="Next").click()
    # 2. disclosures and call handling
    expect(p.locator(".form h2")).to_have_text("2. Disclosures & call handling")
    p.uncheck("input[name=disclose_e_verify]")
    p.check("input[name=manual_approval]")
    p.fill("input[name=score_threshold]", "80")
    p.check(f"input[name=interviewer_ids][value='{env.interviewer_id}']")
    p.select_option("select[name=default_interviewer_id]", env.interviewer_id)
    p.get_by_role("button", name="Next").click()
    # 3. custom context
    p.fill("textarea[name=custom_context]", "Drivers earn 22 dollars an hour. Routes start in Dayton at 6 am.")
    p.get_by_role("button", name="Next").click()
    # 4. questions: add three, reorder, leave the last one empty
    add = p.get_by_role("button", name="Add question")
    add.click()
    p.fill("input[name='questions[0].text']", "Do you have a commercial driver's license?")
    p.fill("input[name='questions[0].expected']", "yes")
    p.check("input[name='questions[0].dealbreaker']")
    add.click()
    p.fill("input[name='questions[1].text']", "How many years have you driven professionally?")
    p.select_option("select[name='questions[1].kind']", "number")
    p.fill("input[name='questions[1].expected']", ">= 2")
    p.fill("input[name='questions[1].weight']", "2")
    p.get_by_role("button", name="Move question 2 up").click()
    expect(p.locator("input[name='questions[0].text']")).to_have_value("How many years have you driven professionally?")
    add.click()
    p.get_by_role("button", name="Create receptionist").click()

    # the API's message for phone_number, beside the phone number, on step 1
    error = p.locator("[data-field=phone_number] [data-field-error]")
    expect(error).to_contain_text("E.164")
    expect(p.locator(".step[aria-current=step]")).to_contain_text("Basic information")
    expect(p.locator("input[name=phone_number]")).to_have_attribute("aria-invalid", "true")
    p.shot("editor-validation")
    p.locator("[data-field=phone_number]").scroll_into_view_if_needed()
    p.shot("readme-editor", full_page=False)
    phone = unique_phone()
    p.fill("input[name=phone_number]", phone)
    expect(error).to_have_count(0)
    p.get_by_role("button", name="Create receptionist").click()

    # then questions[2].text, beside the third question's text, on step 4
    error = p.locator("[data-field='questions[2].text'] [data-field-error]")
    expect(error).to_contain_text("must not be empty")
    expect(p.locator(".step[aria-current=step]")).to_contain_text("Questions")
    p.get_by_role("button", name="Remove question 3").click()
    p.get_by_role("button", name="Create receptionist").click()
    expect(p.locator(".editor h1")).to_have_text("Maya")
    p.wait_for_function("() => /^#\\/receptionists\\/[^/]+$/.test(location.hash) && !location.hash.endsWith('/new')")
    p.shot("editor")

    # what the API now has
    _, listing = env.api("GET", "/api/v1/receptionists")
    r = next(x for x in listing["data"] if x["phone_number"] == phone)
    assert r["agent_name"] == "Maya"
    assert r["voice"] == "kal16"
    assert r["language_mode"] == "multilingual"
    assert r["disclose_e_verify"] is False and r["disclose_ai"] is True
    assert r["manual_approval"] is True
    assert r["score_threshold"] == 80
    assert r["interviewer_ids"] == [env.interviewer_id]
    assert r["default_interviewer_id"] == env.interviewer_id
    assert "22 dollars" in r["custom_context"]
    assert [q["text"] for q in r["questions"]] == [
        "How many years have you driven professionally?",
        "Do you have a commercial driver's license?",
    ]
    assert r["questions"][0]["kind"] == "number" and r["questions"][0]["weight"] == 2
    assert r["questions"][1]["dealbreaker"] is True and r["questions"][1]["expected"] == "yes"
    assert r["status"] == "live"

    # deactivate from the list: the API agrees
    p.route("receptionists")
    row = p.locator(f"tr[data-receptionist='{r['id']}']")
    row.get_by_role("button", name="Deactivate").click()
    expect(row).to_contain_text("Inactive")
    assert env.api("GET", f"/api/v1/receptionists/{r['id']}")[1]["status"] == "inactive"
    p.get_by_role("tab", name=re.compile("^Inactive")).click()
    expect(row).to_be_visible()
    p.get_by_role("tab", name=re.compile("^Live")).click()
    expect(row).to_have_count(0)
    p.get_by_role("tab", name=re.compile("^All")).click()
    row.get_by_role("button", name="Activate").click()
    expect(row).to_contain_text("Live")
    p.shot("receptionists")


def test_a_route_taken_as_soon_as_the_page_shows_is_followed(new_page, env):
    # the page subscribes to hash changes in an effect, which runs after the first paint: a
    # navigation made as soon as the signed-in page appears (here: by a script that watches for
    # it, before any effect can run) must still be followed, not lost
    p = new_page()
    p.sign_in(env.admin_key)
    p.page.add_init_script(
        """
        new MutationObserver((_, observer) => {
          if (document.querySelector('.topbar')) {
            observer.disconnect();
            location.hash = '#/receptionists';
          }
        }).observe(document, { childList: true, subtree: true });
        """
    )
    p.route("analytics")
    p.page.reload()
    expect(p.get_by_role("link", name="New receptionist")).to_be_visible()
    expect(p.locator(".nav-item.active")).to_have_text("Receptionists")


def test_find_play_approve_and_ingest_a_candidate(admin, env):
    p = admin
    expect(p.locator("h1")).to_have_text("Candidates")
    row = p.locator(f"tr[data-candidate='{env.candidate_id}']")
    expect(row).to_be_visible()
    expect(p.locator("[data-tab=needs_review] .count")).to_have_text("1")
    # search as you type: by name, by the last digits of the phone, and no match
    search = p.locator("input[type=search]")
    search.fill("smi")
    expect(row).to_be_visible()
    _, c = env.api("GET", f"/api/v1/candidates/{env.candidate_id}")
    search.fill(c["phone_number"][-4:])
    expect(row).to_be_visible()
    search.fill("nobody-called-this")
    expect(p.locator(".empty")).to_contain_text("No candidate matches")
    expect(p.locator("[data-tab=all] .count")).to_have_text("0")
    search.fill("smith")
    expect(row).to_contain_text(SMITH)
    expect(row).to_contain_text("Rex <i>the agent</i>")
    expect(row).to_contain_text("Needs review")
    expect(row.get_by_role("img", name="Has a recording")).to_be_visible()
    # the copy buttons
    p.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=env.base)
    row.get_by_role("button", name="Copy phone number").click()
    assert p.evaluate("navigator.clipboard.readText()") == c["phone_number"]
    p.shot("pipeline")
    row.get_by_role("link", name="View").click()

    expect(p.locator("h1.candidate-name")).to_contain_text(SMITH)
    # the recording plays and its time advances
    play = p.get_by_role("button", name="Play recording")
    expect(play).to_be_enabled()
    play.click()
    p.wait_for_function("() => document.querySelector('audio').currentTime > 1.0", timeout=15000)
    expect(p.locator(".player .time .current")).not_to_have_text("0:00")
    # a click on a transcript line seeks there, and that line is the one highlighted
    line = p.locator(".transcript .line.caller").first
    start = int(line.get_attribute("data-start-ms")) / 1000
    line.locator("button").click()
    now = p.evaluate("document.querySelector('audio').currentTime")
    assert abs(now - start) < 0.6, (now, start)
    expect(line).to_have_class(re.compile(r"\bactive\b"))
    expect(line).to_have_attribute("aria-current", "true")
    p.wait_for_function(f"() => document.querySelector('audio').currentTime > {start + 0.5}")
    p.shot("readme-candidate", full_page=False)
    # answers with pass/fail, the evaluation
    expect(p.locator(".answers")).to_contain_text("Pass")
    # each turn's response time, by stage
    p.locator(".latencies summary").click()
    expect(p.locator(".latencies tbody tr").first).to_contain_text(" ms")
    expect(p.locator(".latencies thead")).to_contain_text("Caller stops")
    expect(p.locator(".evaluation .score")).to_be_visible()
    p.shot("candidate")
    p.get_by_role("button", name="Pause").click()

    # approve
    p.get_by_role("button", name="Approve").click()
    expect(p.locator(".stat .decision")).to_have_text("Approved")
    # ingest: only the interviewers of this candidate's receptionist are offered
    p.locator(".head-actions").get_by_role("button", name="Ingest").click()
    dialog = p.locator("dialog.modal")
    expect(dialog.locator("input[name=interviewer]")).to_have_count(1)
    expect(dialog).to_contain_text("Warehouse interview")
    expect(dialog).not_to_contain_text("Driver interview")
    p.shot("ingest-dialog", full_page=False)
    dialog.get_by_role("button", name="Ingest").click()
    expect(p.locator(".stat .ingested")).to_have_text("Warehouse interview")
    # a note
    p.fill("textarea[aria-label='New note']", "Strong <em>candidate</em>, call back Monday.")
    p.get_by_role("button", name="Add note").click()
    expect(p.locator(".note-list")).to_contain_text("Strong <em>candidate</em>, call back Monday.")

    _, c = env.api("GET", f"/api/v1/candidates/{env.candidate_id}")
    assert c["review"] == "approved"
    assert c["ingested"]["interviewer_id"] == env.interviewer_id
    kinds = [h["kind"] for h in c["history"]]
    assert "ingested" in kinds and "note" in kinds, kinds


def test_markup_from_callers_is_shown_as_text(admin, env):
    p = admin
    p.route(f"candidates/{env.candidate_id}")
    intro = p.locator(".transcript .line.agent .text").first
    expect(intro).to_contain_text("<script>window.__xss = 1</script>")
    expect(intro).to_contain_text("<b>Rex</b>")
    assert p.locator(".transcript script, .transcript b, main img").count() == 0
    expect(p.locator(".candidate .meta").first).to_contain_text('<img src=x onerror="window.__xss = 2">Springfield')
    expect(p.locator(".candidate .meta").first).to_contain_text("Rex <i>the agent</i>")
    assert p.evaluate("window.__xss") is None
    p.route("receptionists")
    expect(p.locator("table.receptionists")).to_contain_text("Rex <i>the agent</i>")
    assert p.locator("table.receptionists i").count() == 0


VIEWER_PAGES = ["candidates", "candidate", "receptionists", "receptionist", "analytics", "try", "settings"]
CHANGING = re.compile(
    r"^\s*(Approve|Reject|Ingest|Edit details|Add note|New receptionist|Save changes|Create receptionist"
    r"|Activate|Deactivate|Create key|Revoke|New interviewer|Edit|Add webhook|Delete|Call this receptionist"
    r"|Add question|Try it)\s*$"
)


def test_a_viewer_gets_no_buttons_that_change_anything(viewer, new_page, env):
    admin = new_page()
    admin.sign_in(env.admin_key)
    _, listing = env.api("GET", "/api/v1/receptionists")
    receptionist = listing["data"][0]["id"]
    expect(viewer.locator(".topbar")).to_contain_text("read only")
    for name in VIEWER_PAGES:
        route = {"candidate": f"candidates/{env.candidate_id}", "receptionist": f"receptionists/{receptionist}"}.get(name, name)
        for who in (admin, viewer):
            who.route(route)
            who.wait_for_load_state("networkidle")
            expect(who.locator(".spinner")).to_have_count(0)
        # the same page for an admin has such controls (the check below is not vacuous)
        if name != "analytics":
            assert admin.locator("[data-mutates]").count() > 0, name
        assert viewer.locator("[data-mutates]").count() == 0, name
        labels = viewer.locator("button, a.button").all_inner_texts()
        changing = [label for label in labels if CHANGING.match(label)]
        assert not changing, (name, changing)
        if name == "receptionist":
            assert viewer.locator("form fieldset[disabled]").count() == 1
            assert viewer.locator("input[name=phone_number]").is_disabled()
        if name == "candidate":
            viewer.shot("viewer-candidate")
            assert viewer.locator("textarea[aria-label='New note']").count() == 0


def test_analytics_settings_and_a_phone_screen(admin, new_page, env):
    p = admin
    p.route("analytics")
    funnel = p.locator("[data-chart=funnel] .bar-row")
    expect(funnel.first).to_contain_text("Calls")
    expect(funnel.first.locator(".bar-value strong")).not_to_have_text("0")
    expect(p.locator("[data-chart=drop-off]")).to_contain_text("Completed")
    _, c = env.api("GET", f"/api/v1/candidates/{env.candidate_id}")
    p.select_option("select[aria-label=Receptionist]", c["receptionist_id"])
    expect(funnel.first.locator(".bar-value strong")).to_have_text("1")
    p.fill("input[name=from]", "2001-01-01")
    p.fill("input[name=to]", "2001-01-31")
    expect(funnel.first.locator(".bar-value strong")).to_have_text("0")
    p.get_by_role("button", name="30 days").click()
    expect(funnel.first.locator(".bar-value strong")).to_have_text("1")
    p.select_option("select[aria-label=Receptionist]", "")
    p.shot("analytics")

    p.route("settings")
    keys = p.locator("table.keys")
    expect(keys).to_contain_text("Read-only laptop")
    p.fill("input[name=key_name]", "Temp viewer")
    p.select_option("select[name=key_role]", "viewer")
    p.get_by_role("button", name="Create key").click()
    secret = p.locator("dialog code[data-secret]")
    expect(secret).to_be_visible()
    key = secret.inner_text()
    assert env.api("GET", "/api/v1/me", key=key)[1]["role"] == "viewer"
    p.locator("dialog").get_by_role("button", name="Done").click()
    row = keys.locator("tr", has_text="Temp viewer")
    row.get_by_role("button", name="Revoke").click()
    p.locator("dialog").get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("Revoked")
    assert env.api("GET", "/api/v1/me", key=key)[0] == 401

    # a webhook (a loopback address that refuses: nothing leaves this machine)
    p.fill("input[name=webhook_url]", "not a url")
    p.get_by_role("button", name="Add webhook").click()
    expect(p.locator("#webhooks [data-field-error=url]")).to_be_visible()
    p.fill("input[name=webhook_url]", "http://127.0.0.1:9/hooks/receptionist")
    p.get_by_role("button", name="Add webhook").click()
    expect(p.locator("dialog code[data-secret]")).to_contain_text("whsec_")
    p.locator("dialog").get_by_role("button", name="Done").click()
    hook = p.locator(".webhook", has_text="127.0.0.1:9")
    hook.get_by_role("button", name="Deliveries").click()
    expect(hook.locator(".deliveries")).to_contain_text("No deliveries yet")
    p.shot("settings")

    phone = new_page(viewport=(390, 844))
    phone.sign_in(env.admin_key)
    expect(phone.locator(f"tr[data-candidate='{env.candidate_id}']")).to_be_visible()
    phone.shot("phone-pipeline", full_page=False)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 391
    phone.route(f"candidates/{env.candidate_id}")
    expect(phone.locator(".transcript")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 391
    phone.shot("phone-candidate")


def test_a_call_from_the_browser_with_a_fake_microphone(admin, env):
    rid = env.web_receptionist_id
    status, _ = env.api("GET", f"/api/v1/receptionists/{rid}/web-calls")
    if status == 404:
        pytest.skip("POST /api/v1/receptionists/{id}/web-calls is not on this branch yet")
    p = admin
    p.route(f"try/{rid}")
    p.get_by_role("button", name="Call this receptionist").click()
    expect(p.locator("[data-call-state=live]")).to_be_visible(timeout=20000)
    expect(p.locator(".live-transcript .line.agent").first).to_contain_text("Chloe", timeout=20000)
    # the fake microphone says "my name is john smith"; the offline recogniser hears it
    heard = p.locator(".live-transcript .line.caller", has_text=SMITH)
    expect(heard.first).to_be_visible(timeout=60000)
    p.shot("try-it")
    p.shot("readme-try-it", full_page=False)
    p.get_by_role("button", name="Hang up").click()
    expect(p.locator("[data-call-state=ended]")).to_be_visible(timeout=20000)

    # stored like a phone call, with what the WAV said
    deadline = time.time() + 30
    while True:
        _, calls = env.api("GET", "/api/v1/calls?limit=20")
        mine = [c for c in calls["data"] if c["receptionist_id"] == rid]
        if mine:
            _, call = env.api("GET", f"/api/v1/calls/{mine[0]['id']}")
            said = " ".join(line["text"] for line in call["transcript"] if line["speaker"] == "caller")
            if call["ended_at"] and SMITH.search(said):
                break
        assert time.time() < deadline, f"no stored web call with the caller's words: {mine}"
        time.sleep(0.5)
    assert call["has_recording"] is True
    # the page echoed each mark once the agent audio before it had played
    assert call["disclosures"] and all(d["played_in_full"] for d in call["disclosures"]), call["disclosures"]
    expect(p.get_by_role("link", name="Open the candidate")).to_be_visible(timeout=15000)


def test_the_pipeline_pages_over_the_cursor(new_page, env):
    # two candidates by now (the phone call's and the browser call's); pages of one each
    _, page = env.api("GET", "/api/v1/candidates")
    if page["counts"]["all"] < 2:
        pytest.skip("needs the browser call's candidate")
    p = new_page()
    cursors = []

    def one_per_page(route):
        url = route.request.url.replace("limit=50", "limit=1")
        if "cursor=" in url:
            cursors.append(url)
        route.continue_(url=url)

    p.page.route("**/api/v1/candidates?*", one_per_page)
    p.sign_in(env.admin_key)
    rows = p.locator("table.candidates tbody tr")
    # the end of the list is in view, so the next page follows by itself
    expect(rows).to_have_count(2)
    assert cursors, "no page was asked for with a cursor"
    expect(p.locator("[data-tab=all] .count")).to_have_text("2")
    # newest first: the browser call's candidate, then the phone call's
    expect(rows.nth(1)).to_have_attribute("data-candidate", env.candidate_id)
    expect(p.get_by_role("button", name="Load more")).to_have_count(0)
