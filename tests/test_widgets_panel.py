"""The ``%amlmm panel`` dashboard, headless, on a real service of the embedded backend:
tabs, row details, score, keys (masked, revealed), regenerate, delete with confirmation."""

from __future__ import annotations

import html
import json

import pytest
from flows import create_service, iris_image, score, unique

from amlmm_magics.notebook import frontend, widgets
from amlmm_magics.notebook.panel import Panel, ServiceTab, TextPanel

SAMPLE = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def deployed(local, tmp_path_factory):
    image, _model, clf = iris_image(local, tmp_path_factory.mktemp("panel"))
    service = create_service(local, image.id, name=unique("wpanel"))
    return image, service, clf


@pytest.fixture
def panel(local, deployed):
    p = Panel(local.client, page_size=5)
    yield p
    p.close()


def choose(tab, service):
    """Page through the tab until the service is on the page shown, then select it."""
    listing = tab.listing
    listing.filter.value = service["name"]
    ids = [value for _, value in tab.select.options]
    assert service["id"] in ids, tab.select.options
    tab.select.value = service["id"]


def text(view):
    return html.unescape(view.value)


def test_tabs_load_lazily_and_show_details(local, deployed, panel):
    image, _, _ = deployed
    assert [panel.tab.get_title(i) for i in range(5)] == [
        "Models", "Manifests", "Images", "Services", "Deployments"]
    assert panel.tabs["model"].listing.loaded
    assert not panel.tabs["image"].listing.loaded  # nothing asked before the tab opens
    panel.tab.selected_index = 2
    images = panel.tabs["image"]
    assert images.listing.loaded
    images.listing.filter.value = image["manifest"]["name"]
    assert [v for _, v in images.select.options] == ["", image["id"]]
    images.select.value = image["id"]
    details = text(images.details)
    assert image["id"] in details and "imageBuildLogUri" in details
    assert "sig=***" in details and image["imageBuildLogUri"].split("sig=")[1] not in details
    images.select.value = ""
    assert images.details.value == ""


def test_deployments_tab_filters_by_service(local, deployed, panel):
    _, service, _ = deployed
    deployments = panel.open("deployment")
    deployments.listing.filter.value = service["id"]
    labels = [label for label, _ in deployments.select.options[1:]]
    assert labels and all(label.startswith(service["name"]) for label in labels)


def test_service_actions_appear_with_a_selection(local, deployed, panel):
    _, service, _ = deployed
    services = panel.open("service")
    assert isinstance(services, ServiceTab)
    assert services.actions.layout.display == "none"
    choose(services, service)
    assert services.actions.layout.display != "none"
    assert service["scoringUri"] in text(services.details)


def test_score_from_the_panel(local, deployed, panel):
    _, service, clf = deployed
    services = panel.open("service")
    choose(services, service)
    services.payload.value = json.dumps(SAMPLE)
    services.score_button.click()
    assert json.loads(text(services.score_result).split(">", 1)[1].rsplit("<", 1)[0]) == \
        clf.predict(SAMPLE).tolist()

    services.payload.value = "[[1, 2"
    services.score_button.click()
    shown = text(services.score_result)
    assert "Scoring failed: the payload is not JSON" in shown and "Traceback" not in shown
    assert shown.count("<div") == 1

    services.payload.value = json.dumps([[1, 2]])  # the model wants 4 features
    services.score_button.click()
    assert "Scoring failed: HTTP " in text(services.score_result)


def test_keys_masked_then_revealed_then_regenerated(local, deployed, panel):
    _, service, _ = deployed
    services = panel.open("service")
    choose(services, service)
    keys = local.client.get_service_keys(service["id"])
    services.keys_button.click()
    shown = text(services.keys_view)
    assert keys["primaryKey"] not in shown and keys["primaryKey"][:4] + "***" in shown
    assert keys["secondaryKey"] not in shown
    services.reveal.value = True
    shown = text(services.keys_view)
    assert keys["primaryKey"] in shown and keys["secondaryKey"] in shown
    services.reveal.value = False
    assert keys["primaryKey"] not in text(services.keys_view)

    services.key_type.value = "Secondary"
    services.regenerate_button.click()
    after = local.client.get_service_keys(service["id"])
    assert after["secondaryKey"] != keys["secondaryKey"]
    assert after["primaryKey"] == keys["primaryKey"]
    shown = text(services.keys_view)
    assert "Regenerated the secondary key" in shown
    assert after["secondaryKey"] not in shown and after["secondaryKey"][:4] + "***" in shown
    # The old secondary key no longer scores; the new one does.
    assert score(service, keys["secondaryKey"], SAMPLE).status_code == 401
    assert score(service, after["secondaryKey"], SAMPLE).status_code == 200


def test_delete_asks_first_then_deletes(local, deployed, panel):
    image, _, _ = deployed
    doomed = create_service(local, image["id"], name=unique("wdoomed"))
    services = panel.open("service")
    choose(services, doomed)
    services.confirm_button.click()  # no confirmation asked yet: nothing happens
    assert "click Delete first" in text(services.delete_result)
    assert local.client.get_service(doomed["id"])["id"] == doomed["id"]

    services.delete_button.click()
    assert services.confirm_button.layout.display != "none"
    assert services.confirm_button.description == f"Really delete {doomed['name']}?"
    services.cancel_button.click()
    assert services.confirm_button.layout.display == "none"
    assert local.client.get_service(doomed["id"])["id"] == doomed["id"]

    services.delete_button.click()
    services.confirm_button.click()
    assert f"Deleted service {doomed['name']}." in text(services.delete_result)
    assert services.confirm_button.layout.display == "none"
    assert doomed["id"] not in [v for _, v in services.select.options]
    assert local.client.delete_service(doomed["id"]) is False  # it is gone


def test_errors_show_inline_as_one_line(local, deployed, panel):
    _, service, _ = deployed
    services = panel.open("service")
    choose(services, service)
    services.key_type.options = ["Primary", "Secondary", "Tertiary"]
    services.key_type.value = "Tertiary"
    services.regenerate_button.click()
    shown = text(services.keys_view)
    assert "Regenerating the tertiary key failed:" in shown
    assert "key_type must be 'Primary' or 'Secondary'" in shown
    assert "\n" not in shown and "Traceback" not in shown


def test_action_on_a_vanished_service_reports_the_service_error(local, deployed, panel):
    image, _, _ = deployed
    ghost = create_service(local, image["id"], name=unique("wghost"))
    services = panel.open("service")
    choose(services, ghost)
    local.client.delete_service(ghost["id"])  # deleted behind the panel's back
    services.keys_button.click()
    shown = text(services.keys_view)
    assert shown.startswith("<div class='amlmm-error'") and "Getting the keys failed:" in shown
    services.delete_button.click()
    services.confirm_button.click()
    assert "deleted already" in text(services.delete_result)


def test_make_panel_follows_the_front_end(local, deployed, monkeypatch):
    monkeypatch.setenv(frontend.ENV, "text")
    shown = widgets.make_panel(local.client, page_size=2)
    assert isinstance(shown, TextPanel)
    markup = shown._repr_html_()
    for title in ("Models", "Manifests", "Images", "Services", "Deployments"):
        assert f"<h4>{title}</h4>" in markup
    assert "page 1 of" in repr(shown)
    monkeypatch.setenv(frontend.ENV, "widget")
    live = widgets.make_panel(local.client, page_size=2)
    assert isinstance(live, Panel)
    assert "application/vnd.jupyter.widget-view+json" in live._repr_mimebundle_()
    live.close()
    assert live.widget.comm is None and live.services.score_button.comm is None
