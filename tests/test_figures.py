"""figures.slider_player: the static slider's HTML (its behaviour in a browser is tested in tests/book/test_site.py)."""
import html
import json
import re

import pytest
from matplotlib.figure import Figure

from sdft_lite.figures import slider_player


def frames(n):
    out = []
    for k in range(n):
        figure = Figure(figsize=(2, 1))
        figure.subplots().plot([0, 1], [0, k])
        out.append(figure)
    return out


def test_the_player_embeds_every_frame_and_label_and_starts_at_the_first():
    text = slider_player(frames(3), ["a", "b", "c"], "demo")
    uris = json.loads(html.unescape(re.search(r'data-frames="([^"]*)"', text).group(1)))
    assert len(uris) == 3 and len(set(uris)) == 3 and all(u.startswith("data:image/png;base64,") for u in uris)
    assert json.loads(html.unescape(re.search(r'data-labels="([^"]*)"', text).group(1))) == ["a", "b", "c"]
    assert f'<img src="{uris[0]}"' in text and 'max="2"' in text and "<output>a</output>" in text
    assert "<script" not in text and "src=\"http" not in text   # works offline, without a kernel


def test_one_label_per_frame():
    with pytest.raises(ValueError, match="one label per frame"):
        slider_player(frames(2), ["a"], "demo")
