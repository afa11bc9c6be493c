"""The synthetic RegDB follows the real capture: one walk past one dual camera looking down, bodies
tied to the file name's gender, garments by season, far-infrared physics and a thermal camera's
optics. SYSU-MM01 and LLCM keep their earlier generator, pixel for pixel."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from djanet.data import synthetic as syn
from test_synthetic import _iou, _person_mask

SIZE = (128, 64)


def _renders_digest(layout: str) -> str:
    h = hashlib.sha256()
    for pid in (1, 2, 7):
        for cam in (1, 2, 3, 6):
            for k in (0, 3):
                for infrared in (False, True):
                    h.update(syn.render_image(0, pid, cam, k, infrared, SIZE, layout).tobytes())
    return h.hexdigest()


def test_sysu_and_llcm_renders_are_those_of_their_generator_version():
    """Digests recorded from generator version 3 of both layouts, before RegDB's walk existed."""
    assert syn.GENERATOR_VERSIONS == {"sysu": 3, "llcm": 3, "regdb": 4}
    assert _renders_digest("sysu") == "5e07c8af68e71e69414c290a6abf1fb7015f68fb1be1e3da174b34d465393fd7"
    assert _renders_digest("llcm") == "b9e5dc60ef5d2856497704b409a9eed73d38d4e3078c2d15afc333285db4e3f6"


def _mask(pid: int, k: int) -> np.ndarray:
    """Where person `pid` is in visible frame k of the walk."""
    return _person_mask("regdb", pid, 1, k, False, SIZE)


def test_one_walk_per_person():
    """A person's ten frames: one direction (the file name's), one mirror state, the gait phase
    moving on, the person growing while walking towards the camera and shrinking away from it;
    consecutive frames overlap far more than two people do."""
    same, other, phases = [], [], []
    for pid in range(1, 21):
        _, direction, _ = syn.regdb_tags(0, pid)
        poses = [syn.walk_pose(0, pid, k, *SIZE) for k in range(10)]
        assert {p["view"] for p in poses} == {0 if direction == "front" else 1}
        assert len({p["flip"] for p in poses}) == 1
        scales = np.array([p["scale"] for p in poses])
        assert (np.diff(scales) > 0).all() if direction == "front" else (np.diff(scales) < 0).all()
        assert scales.max() / scales.min() < 1.1
        phases.append(len({round(p["stride"], 6) for p in poses}))
        same += [_iou(_mask(pid, k), _mask(pid, k + 1)) for k in (0, 4, 8)]
        other.append(_iou(_mask(pid, 0), _mask(pid % 20 + 1, 0)))
    assert min(phases) == 10                       # every frame its own gait phase
    assert np.mean(same) > 0.8 and np.mean(same) > np.mean(other) + 0.1


def test_the_camera_looks_down_on_everyone_in_both_lenses():
    for pid, k in ((1, 0), (5, 7)):
        vis, _ = syn.image_pose(0, pid, 1, k, False, SIZE, "regdb")
        ir, _ = syn.image_pose(0, pid, 2, k, True, SIZE, "regdb")
        assert (vis["tilt"], vis["squash"]) == (ir["tilt"], ir["squash"]) == (syn.REGDB_TILT, syn.REGDB_SQUASH)
    # The head, nearer the camera, is drawn larger than on a level view; the shoes smaller.
    ident = dict(syn.identity(0, 3, "regdb"), hat=False, bag=0)
    pose = dict(syn.walk_pose(0, 3, 0, *SIZE), occ=None)
    level = syn.draw_parts(ident, dict(pose, tilt=0.0, squash=1.0), *SIZE).part
    looking_down = syn.draw_parts(ident, dict(pose, squash=1.0), *SIZE).part
    assert (looking_down == syn.SHOES).sum() <= (level == syn.SHOES).sum()
    head = lambda p: ((p == syn.SKIN) | (p == syn.HAIR))[: SIZE[0] // 5].sum()   # noqa: E731
    assert head(looking_down) > 1.05 * head(level)


def test_body_follows_the_gender_in_the_file_name():
    people = [syn.identity(0, pid, "regdb") for pid in range(1, 301)]
    women = [p for p in people if p["gender"] == "female"]
    men = [p for p in people if p["gender"] == "male"]
    assert 0.28 < len(women) / len(people) < 0.48          # 158 of 412 in the real dataset
    mean = lambda group, key: np.mean([p[key] for p in group])   # noqa: E731
    assert mean(men, "height") > mean(women, "height") + 0.04
    ratio = lambda group: np.mean([p["shoulder"] / p["hip"] for p in group])   # noqa: E731
    assert ratio(men) > 1.3 > 1.2 > ratio(women)
    assert mean(women, "long_hair") > 0.5 > 0.15 > mean(men, "long_hair")
    assert mean(men, "skirt") == 0 and 0.15 < mean(women, "skirt") < 0.45
    # continuous, not a few levels
    assert len({round(p["height"], 4) for p in people}) > 250
    assert len({round(p["sleeve"], 4) for p in people}) > 250
    # the same gender in the identity and in the file name the layout writes
    assert all(p["gender"] == syn.regdb_tags(0, pid)[0] for pid, p in enumerate(people, 1))


def test_thick_garments_widen_the_outline_and_are_cooler():
    """A coat against a T-shirt on the same person: more of the image is top, and the top's
    emitted level (before the camera's gain) is lower; a coat's hem hangs below the hips."""
    base = dict(syn.identity(0, 4, "regdb"), hat=False, bag=0, skirt=False)
    pose = dict(syn.walk_pose(0, 4, 2, *SIZE), occ=None)
    shirt = dict(base, thick_top=0.008, hem=0.51, insul=base["insul"].copy())
    coat = dict(base, thick_top=0.04, hem=0.7, insul=base["insul"].copy())
    shirt["insul"][syn.TOP], coat["insul"][syn.TOP] = syn._insulation(0.008), syn._insulation(0.04)
    assert syn._insulation(0.008) == pytest.approx(0.662) and syn._insulation(0.04) == pytest.approx(0.31)
    levels, areas = [], []
    for ident in (shirt, coat):
        parts = syn.draw_parts(ident, pose, *SIZE)
        person = parts.part > 0
        img = syn._thermal(ident, parts.part, parts.pat, parts.shade, parts.warmth, person,
                           np.zeros(SIZE, np.float32), 0.35, np.random.default_rng(0), *SIZE)
        top = parts.part == syn.TOP
        areas.append(top.sum())
        levels.append(img[top].mean())
    assert areas[1] > 1.3 * areas[0] and levels[1] < levels[0] - 0.05


def test_far_infrared_skin_by_place_and_cool_hair():
    """Before the optics: the face is the warmest surface, then hands, then lower legs; hair is
    far cooler than skin."""
    faces, hands, legs, hair = [], [], [], []
    for pid in range(1, 41):
        ident = syn.identity(0, pid, "regdb")
        pose = dict(syn.walk_pose(0, pid, 0, *SIZE), occ=None)
        parts = syn.draw_parts(ident, pose, *SIZE)
        img = syn._thermal(ident, parts.part, parts.pat, np.ones(SIZE), parts.warmth, parts.part > 0,
                           np.zeros(SIZE, np.float32), 0.35, np.random.default_rng(pid), *SIZE)
        skin = parts.part == syn.SKIN
        for out, warmth in ((faces, "face"), (hands, "hands"), (legs, "lower legs")):
            sel = skin & (parts.warmth == np.float32(syn.WARMTH[warmth]))
            if sel.any():
                out.append(img[sel].mean())
        if (parts.part == syn.HAIR).any():          # not under a hat
            hair.append(img[parts.part == syn.HAIR].mean())
    assert len(hands) == 40 and len(legs) > 5 and len(hair) > 20
    assert np.mean(faces) > np.mean(hands) > np.mean(legs) > np.mean(hair) + 0.1


def test_no_dye_pattern_in_the_thermal_image():
    """Stripes and checks are dyes: the thermal level of a striped top is flat; only a print (of
    another material) shows, and it is cooler."""
    ident = syn.identity(0, 2, "regdb")
    assert (ident["pdelta"][ident["ptype"] != 4] == 0).all()
    assert (ident["pdelta"][ident["ptype"] == 4] < 0).all()


def test_thermal_optics_blur_and_a_fixed_column_pattern():
    """Pixels twice as coarse and a blur: a one-pixel checkerboard is gone; a flat scene shows
    the camera's own column offsets, the same in every frame of that camera."""
    checker = (np.indices(SIZE).sum(0) % 2).astype(np.float32)
    out = syn._thermal_optics(checker, 0, 2, np.random.default_rng(0))
    assert out.std() < 0.6 * 0.9 / 2 and abs(np.diff(out, axis=1)).mean() < 0.3
    flat = np.full(SIZE, 0.5, np.float32)
    a = syn._thermal_optics(flat, 0, 2, np.random.default_rng(1)).mean(0)
    b = syn._thermal_optics(flat, 0, 2, np.random.default_rng(2)).mean(0)
    other_camera = syn._thermal_optics(flat, 0, 3, np.random.default_rng(1)).mean(0)
    assert np.corrcoef(a, b)[0, 1] > 0.8 and abs(np.corrcoef(a, other_camera)[0, 1]) < 0.5


def test_regdb_cache_folder_carries_the_new_version(tmp_path):
    root = syn.ensure_synthetic("regdb", tmp_path, ids=2, size=(32, 16), per_cam=1)
    assert root.name == "regdb-ids2-s0-32x16-k1-g4"
    names = sorted(p.name for p in (root / "Visible").rglob("*.bmp"))
    assert [n.split("_")[0] for n in names] == [syn.regdb_tags(0, pid)[0] for pid in (1, 2)]
