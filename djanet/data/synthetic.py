"""Synthetic visible-infrared pedestrians, written in the real datasets' on-disk layouts.

Nobody can download SYSU-MM01, RegDB or LLCM without a signed agreement, so tests, CI and the
book run on procedurally drawn people instead.  Each identity has a body shape, a clothing layout
(sleeves, trousers/shorts/skirt, hat, bag), per-garment patterns and per-garment colours *and*
materials.  The visible render shows the colours under camera-specific illumination.  The
infrared render follows the camera each real dataset used:

* SYSU-MM01 and LLCM: *near-infrared* cameras with active illumination, which record
  reflectance.  A garment's near-infrared reflectance follows its dye's lightness where the dye
  absorbs the near infrared too (most dyes), and its bare fibre where the dye is transparent
  there; skin is bright; the camera's illuminator falls off from the image centre, and gain and
  noise vary per image.  LLCM's scenes are low-light (dark, noisy visible images).
* RegDB: a *thermal* camera, which records emitted heat: body heat through each garment's
  insulation and emissivity, so grey levels owe nothing to the dye.

Either way the two modalities share geometry (body shape, garment layout, patterns, accessories)
but not grey levels.  On SYSU-MM01 and LLCM, pose, scale, crop offset, flip and occlusion vary
per image.  RegDB follows its real capture (Nguyen et al., Sensors 17(3):605, 2017): one dual
camera about 6 m above the scene, one walk past it per person (`walk_pose`), each visible frame
with a simultaneous thermal twin, bodies tied to the gender in the file name and garments to a
season (`make_regdb_identity`), skin warmth by place, and a thermal camera's coarse, blurred
pixels with a fixed column pattern (`_thermal_optics`).  Everything is drawn with numpy on
coordinate grids and is deterministic from the seed.

SYSU-MM01 also gets ``exp/rand_perm_cam.mat`` in the format the community's evaluation code reads:
variable ``rand_perm_cam`` is a 6x1 cell (one per camera); cell ``{cam}`` is a (max_pid x 1) cell whose
entry ``{pid}`` is a (trials x n_images) double matrix, each row a permutation of the 1-based image
numbers (the ``NNNN`` of ``NNNN.jpg``) of that camera and identity; empty where the folder is absent.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from .readers import DATASETS as LAYOUTS
from .readers import LLCM_CAMS, SYSU_IR_CAMS, SYSU_VIS_CAMS

# Default sizes: 96 test identities in every layout, as SYSU-MM01's real test set (SYSU: the real
# 491 ids, split 296/99/96; RegDB: half of 192 per trial; LLCM: its real 1/3 test share of 288).
DEFAULT_IDS = {"sysu": 491, "regdb": 192, "llcm": 288}
REAL_IDS = {"sysu": 491, "regdb": 412, "llcm": 1064}  # the real datasets' identity counts
# Part of the cache folder's name, per layout: a changed generator never reuses old data.
GENERATOR_VERSIONS = {"sysu": 3, "llcm": 3, "regdb": 4}   # regdb 4: one walk per person; sysu/llcm 3: dyes
DEFAULT_PER_CAM = {"sysu": 4, "regdb": 10, "llcm": 3}  # images per identity, camera and modality
RAND_PERM_TRIALS = 10

# Part codes of the label map every render starts from.
BG, SKIN, HAIR, TOP, BOTTOM, SHOES, BAG, HAT, OCC = range(9)
# Materials: (emissivity, insulation = fraction of body heat reaching the outer surface,
# near-infrared reflectance of the undyed fibre).
MATERIALS = np.array([[0.95, 0.55, 0.80],   # cotton
                      [0.92, 0.20, 0.70],   # wool / fleece
                      [0.88, 0.40, 0.45],   # denim
                      [0.75, 0.30, 0.30],   # leather
                      [0.62, 0.65, 0.60],   # nylon / synthetic
                      [0.35, 0.15, 0.20]])  # coated / metallic
# Dyes and near-infrared: most dyes that absorb visible light absorb the near infrared too (a dark
# garment stays dark), but some (many reactive and vat dyes) are transparent there, so the garment
# shows its fibre's reflectance whatever its colour: the black shirt that looks white at night.
DYE_SHARE = 0.9          # near-infrared share of an absorbing dye's lightness (the rest: the fibre)
NIR_CLEAR_DYES = 0.25    # chance that a garment's dye is transparent in the near infrared


# ----------------------------------------------------------------------------- identities
def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB in [0, 1]."""
    h, s, v = np.broadcast_arrays(h, s, v)
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in
                      [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]])
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]


def _lightness(rgb: np.ndarray) -> np.ndarray:
    """Luma (Rec. 601) of RGB values in [0, 1], over the last axis."""
    return rgb @ np.array([0.299, 0.587, 0.114])


def _nir_reflectance(colour: np.ndarray, fibre: np.ndarray, r: np.random.Generator) -> np.ndarray:
    """Near-infrared reflectance of dyed garments: the dye's lightness where the dye absorbs the
    near infrared, the bare fibre where it is transparent there.  Own random stream, so the other
    attributes of a person do not depend on this model."""
    absorbing = DYE_SHARE * _lightness(colour) + (1 - DYE_SHARE) * fibre
    return np.where(r.random(len(fibre)) < NIR_CLEAR_DYES, fibre, absorbing)


def make_identity(seed: int, pid: int) -> dict:
    """Draw one person's appearance: geometry, garments, colours, patterns, materials, heat."""
    r = np.random.default_rng([seed, 17, pid])
    n = OCC + 1
    colour = _hsv_to_rgb(r.random(n), r.uniform(0, 1, n) ** 0.7, r.uniform(0.12, 0.95, n))
    pcolour = _hsv_to_rgb(r.random(n), r.uniform(0, 1, n), r.uniform(0.1, 1.0, n))
    colour[SKIN] = np.array([0.93, 0.78, 0.66]) * (1 - r.uniform(0, 0.6)) + [0.05, 0.03, 0.02]
    colour[HAIR] = np.array([0.55, 0.42, 0.30]) * r.uniform(0.1, 1.2) if r.random() < .8 \
        else colour[HAIR]
    ptype = r.choice(5, n, p=[0.45, 0.18, 0.12, 0.12, 0.13])
    ptype[[SKIN, HAIR, SHOES]] = 0
    mat = r.integers(0, len(MATERIALS), n)
    fibre = np.clip(MATERIALS[mat, 2] + r.normal(0, 0.08, n), 0.05, 0.95)
    nir = _nir_reflectance(colour, fibre, np.random.default_rng([seed, 18, pid]))
    pnir = _nir_reflectance(pcolour, fibre, np.random.default_rng([seed, 19, pid]))
    nir[SKIN] = r.uniform(0.72, 0.9)                                     # skin is bright in NIR
    nir[HAIR] = 0.2 + 0.4 * _lightness(colour[HAIR])
    return dict(
        colour=colour, pcolour=pcolour, ptype=ptype, pfreq=r.uniform(7, 18, n), nir=nir, pnir=pnir,
        emis=MATERIALS[mat, 0], insul=MATERIALS[mat, 1], pdelta=r.uniform(-0.2, 0.2, n),
        heat=r.uniform(0.78, 0.95), height=r.uniform(0.86, 1.0), shoulder=r.uniform(0.2, 0.31),
        hip=r.uniform(0.16, 0.24), head=r.uniform(0.85, 1.15), sleeve=r.choice([0.35, 0.6, 1.0]),
        legs=r.choice([0.45, 1.0, 1.0]), skirt=r.random() < 0.15, bag=r.choice(3, p=[.45, .35, .2]),
        hat=r.random() < 0.2, long_hair=r.random() < 0.3,
    )


# RegDB's people (Nguyen et al., Sensors 17(3):605, 2017): 254 men and 158 women, one walk each,
# towards or away from one dual camera about 6 m above the scene.
REGDB_FEMALE_SHARE = 158 / 412
# Thermal emissivity of garment materials: textiles are near-black emitters in the far infrared
# whatever their dye; only coated or metallised fabric reflects much of the surroundings.
EMISSIVITY = {"cotton": 0.95, "wool": 0.93, "denim": 0.92, "synthetic": 0.88, "coated": 0.4}
# A season per person: top (material choices and weights, thickness as a fraction of the body's
# height, sleeve length as a fraction of the arm, hem), and the chance of bare lower legs.
SEASONS = {
    "summer": dict(tops=(("cotton", "synthetic"), (0.8, 0.2)), thick=(0.004, 0.012),
                   sleeve=(0.25, 0.5), hem=(0.5, 0.53), bare_legs=0.5),
    "spring": dict(tops=(("cotton", "wool", "synthetic"), (0.5, 0.3, 0.2)), thick=(0.012, 0.025),
                   sleeve=(0.8, 1.0), hem=(0.5, 0.55), bare_legs=0.1),
    "winter": dict(tops=(("wool", "synthetic", "coated"), (0.5, 0.4, 0.1)), thick=(0.03, 0.05),
                   sleeve=(0.95, 1.0), hem=(0.55, 0.75), bare_legs=0.0),
}
SEASON_SHARE = (0.4, 0.35, 0.25)


def regdb_tags(seed: int, pid: int) -> tuple[str, str, int]:
    """The gender, walking direction (front: towards the camera) and sequence number a RegDB
    file name carries, e.g. ``female_back_v_06495_3.bmp``."""
    r = np.random.default_rng([seed, 4, pid])
    gender = "female" if r.random() < REGDB_FEMALE_SHARE else "male"
    return gender, str(r.choice(["front", "back"])), int(r.integers(1000, 99999))


def _insulation(thickness: np.ndarray | float) -> np.ndarray:
    """Share of the body's heat excess that reaches a garment's outer surface: 0.66 through a
    T-shirt (0.008 of the body's height thick), 0.31 through a coat (0.04)."""
    return np.clip(0.75 - 11 * np.asarray(thickness), 0.2, 0.75)


def make_regdb_identity(seed: int, pid: int) -> dict:
    """A RegDB person: `make_identity`'s colours, patterns and accessories, with the body and
    clothes drawn as the real capture shows them.  The body is continuous and follows the gender
    in the file name (men taller, broader shoulders against the hips; women longer hair, skirts);
    the garments follow a season (thickness widens the outline and insulates, sleeve and hem
    lengths continuous, emissivity from the material); the thermal image shows a print only
    (a different material), never a dye's stripes or checks."""
    ident = make_identity(seed, pid)
    gender, _, _ = regdb_tags(seed, pid)
    female = gender == "female"
    r = np.random.default_rng([seed, 21, pid])
    season = SEASONS[str(r.choice(list(SEASONS), p=SEASON_SHARE))]
    names, weights = season["tops"]
    top = str(r.choice(names, p=weights))
    bare_legs = r.random() < season["bare_legs"]
    skirt = female and r.random() < 0.3
    bottom = "cotton" if (bare_legs or skirt) else str(r.choice(["denim", "cotton", "synthetic"], p=[0.6, 0.25, 0.15]))
    thick_top, thick_bottom = r.uniform(*season["thick"]), r.uniform(0.004, 0.012)
    emis = np.full(OCC + 1, EMISSIVITY["cotton"])
    emis[TOP], emis[BOTTOM] = EMISSIVITY[top], EMISSIVITY[bottom]
    insul = np.full(OCC + 1, 0.5)
    insul[TOP], insul[BOTTOM] = _insulation(thick_top), _insulation(thick_bottom)
    ptype = ident["ptype"]
    ident.update(
        gender=gender, emis=emis, insul=insul,
        pdelta=np.where(ptype == 4, -r.uniform(0.03, 0.08, OCC + 1), 0.0),
        height=float(np.clip(r.normal(0.89 if female else 0.95, 0.03), 0.8, 1.0)),
        shoulder=float(np.clip(r.normal(0.235 if female else 0.27, 0.012), 0.2, 0.31)),
        hip=float(np.clip(r.normal(0.215 if female else 0.19, 0.01), 0.16, 0.24)),
        long_hair=bool(r.random() < (0.65 if female else 0.05)),
        hair_len=float(r.uniform(0.12, 0.3) if female else r.uniform(0.08, 0.14)),
        skirt=bool(skirt), thick_top=float(thick_top), thick_bottom=float(thick_bottom),
        sleeve=float(r.uniform(*season["sleeve"])), hem=float(r.uniform(*season["hem"])),
        legs=float(r.uniform(0.35, 0.6) if bare_legs or skirt else r.uniform(0.88, 1.0)),
    )
    return ident


def identity(seed: int, pid: int, layout: str) -> dict:
    """The person `pid` as drawn for `layout` (RegDB's people: `make_regdb_identity`)."""
    return make_regdb_identity(seed, pid) if layout == "regdb" else make_identity(seed, pid)


# ----------------------------------------------------------------------------- geometry
@lru_cache(maxsize=8)
def _grid(h: int, w: int):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    return yy, xx


def _ellipse(Y, X, cy, cx, ry, rx):
    return ((Y - cy) / ry) ** 2 + ((X - cx) / rx) ** 2 <= 1.0


def _capsule(Y, X, y0, x0, y1, x1, rad):
    """Mask of a thick segment and the position t in [0, 1] along it (for sleeves, trousers)."""
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((Y - y0) * dy + (X - x0) * dx) / (dy * dy + dx * dx + 1e-9), 0, 1)
    return (Y - y0 - t * dy) ** 2 + (X - x0 - t * dx) ** 2 <= rad * rad, t


def _pattern(kind, freq, u, v, front):
    if kind == 1:
        return np.sin(2 * np.pi * freq * v) > 0.3
    if kind == 2:
        return np.sin(2 * np.pi * freq * u) > 0.3
    if kind == 3:
        return np.sin(2 * np.pi * freq * u) * np.sin(2 * np.pi * freq * v) > 0
    if kind == 4 and front:   # a print on the front only
        return (np.abs(u) < 0.055) & (np.abs(v - 0.3) < 0.06)
    return np.zeros_like(u, dtype=bool)


class Parts(NamedTuple):
    """What `draw_parts` returns: the label map (h, w) of part codes, the pattern mask, a
    body-roundness shading in [0, 1], and `warmth`: the share of a surface's heat excess over the
    ambient that reaches the camera at each pixel (1: in contact with the body; less where fabric
    hangs loose or traps air, or where skin is cooler than the face).  Only the thermal render
    reads `warmth`."""
    part: np.ndarray
    pat: np.ndarray
    shade: np.ndarray
    warmth: np.ndarray


# Thermal warmth of skin by place (the face is the warmest surface) and of loose fabric.
WARMTH = {"face": 1.0, "neck": 0.97, "hands": 0.88, "lower legs": 0.82, "loose": 0.55, "skirt": 0.7}


def _body_grid(pose: dict, h: int, w: int, top: float, ph: float, cx: float):
    """The pixel grid in body coordinates.  A camera looking down from above (`pose['tilt']` > 0)
    sees the head nearer than the feet: image rows near the head are magnified by 1 + tilt and
    those at the feet by 1 - tilt, and widths grow by 1 / `pose['squash']` against heights (the
    body's height is foreshortened).  Without a tilt, the plain grid."""
    Y, X = _grid(h, w)
    t, squash = pose.get("tilt", 0.0), pose.get("squash", 1.0)
    if not t and squash == 1.0:
        return Y, X
    phi = (Y - top) / ph                         # image fraction of the body's height
    if t:   # invert phi = f + t f (1 - f) for the body fraction f (linear outside [0, 1])
        inside = ((1 + t) - np.sqrt(np.maximum((1 + t) ** 2 - 4 * t * np.clip(phi, 0, 1), 0))) / (2 * t)
        f = np.where(phi < 0, phi / (1 + t), np.where(phi > 1, 1 + (phi - 1) / (1 - t), inside))
    else:
        f = phi
    magnification = 1 + t * (1 - 2 * np.clip(f, 0, 1))
    return (top + f * ph).astype(np.float32), (cx + (X - cx) * squash / magnification).astype(np.float32)


def draw_parts(ident: dict, pose: dict, h: int, w: int) -> Parts:
    """Paint one person in `pose` into a label map, with its pattern, shading and warmth maps.

    Optional keys (absent: the plain figure): the identity's `thick_top` / `thick_bottom`
    (garment thickness as a fraction of the body's height: it widens the outline, and the added
    margin is loose fabric), `hem` (where the top ends: 0.51 at the hips, lower for a coat),
    `hair_len`; the pose's `tilt` and `squash` (a camera looking down, `_body_grid`).
    """
    ph = pose["scale"] * ident["height"] * h * 0.92
    cx, top = w / 2 + pose["dx"], (h - ph) / 2 + pose["dy"]
    Y, X = _body_grid(pose, h, w, top, ph, cx)
    view = pose["view"]                       # 0 front, 1 back, 2 side
    narrow = 0.62 if view == 2 else 1.0
    sw, hw = ident["shoulder"] * ph * narrow, ident["hip"] * ph * narrow
    thick_top, thick_bottom = ident.get("thick_top", 0.0) * ph, ident.get("thick_bottom", 0.0) * ph
    hem = ident.get("hem", 0.51)
    yv = lambda f: top + f * ph                # noqa: E731  (fraction of height -> pixel row)
    part = np.zeros((h, w), np.int8)
    warmth = np.ones((h, w), np.float32)

    def paint(mask, code, warm=1.0):
        part[mask] = code
        warmth[mask] = warm

    def limb(ends, radius, length, code, thickness, skin):
        """A limb's capsule: the garment `code` down to `length` along it (the margin its
        thickness adds hangs loose), bare skin (warmth of place `skin`) below."""
        if thickness:
            m, t = _capsule(Y, X, *ends, radius + thickness)
            paint(m & (t <= length), code, WARMTH["loose"])
        m, t = _capsule(Y, X, *ends, radius)
        paint(m & (t <= length), code)
        paint(m & (t > length), SKIN, WARMTH[skin])

    if ident["long_hair"]:
        paint((Y > yv(0.05)) & (Y < yv(0.05 + ident.get("hair_len", 0.21))) & (np.abs(X - cx) < 0.07 * ph), HAIR)
    stride, swing = pose["stride"] * ph, pose["swing"] * ph
    for side in (-1, 1):                       # legs: trousers down to `legs`, then skin
        hx = cx + side * hw * 0.28
        limb((yv(0.5), hx, yv(0.94), hx + side * stride * 0.5), 0.048 * ph, ident["legs"], BOTTOM,
             thick_bottom, "lower legs")
        paint(_ellipse(Y, X, yv(0.955), hx + side * stride * 0.5 + (0.02 * ph if view == 2 else 0),
                       0.025 * ph, 0.045 * ph), SHOES)
    paint((Y > yv(0.46)) & (Y < yv(0.56)) & (np.abs(X - cx) < hw / 2 + thick_bottom), BOTTOM)
    if ident["skirt"]:
        f = np.clip((Y - yv(0.46)) / (0.26 * ph), 0, 1)
        paint((Y > yv(0.46)) & (Y < yv(0.72)) & (np.abs(X - cx) < hw / 2 + f * 0.06 * ph), BOTTOM,
              WARMTH["skirt"])
    f = np.clip((Y - yv(0.15)) / (0.36 * ph), 0, 1)  # torso: a trapezoid shoulders -> hips
    lean = pose["lean"] * f * ph
    torso = (Y > yv(0.15)) & (Y < yv(0.51))
    if hem > 0.51:                             # a coat: on below the hips, flaring, hanging loose
        flare = np.clip((Y - yv(0.51)) / ph, 0, None) * 0.25 * ph
        paint((Y >= yv(0.51)) & (Y < yv(hem)) & (np.abs(X - cx - lean) < hw / 2 + thick_top + flare),
              TOP, WARMTH["loose"])
    if thick_top:
        paint(torso & (np.abs(X - cx - lean) < sw / 2 + f * (hw - sw) / 2 + thick_top), TOP, WARMTH["loose"])
    paint(torso & (np.abs(X - cx - lean) < sw / 2 + f * (hw - sw) / 2), TOP)
    for side in (-1, 1):                       # arms: sleeve down to `sleeve`, then skin
        sx = cx + side * (sw / 2 - 0.02 * ph)
        ex = sx + side * 0.02 * ph + (side if view != 2 else 1) * swing
        limb((yv(0.18), sx, yv(0.49), ex), 0.033 * ph, ident["sleeve"], TOP, thick_top, "hands")
    paint((Y > yv(0.12)) & (Y < yv(0.16)) & (np.abs(X - cx) < 0.025 * ph), SKIN, WARMTH["neck"])
    hy, hry, hrx = yv(0.075), 0.062 * ph, 0.05 * ph * ident["head"]
    head = _ellipse(Y, X, hy, cx, hry, hrx)
    paint(head, SKIN, WARMTH["face"])
    paint(head & ((Y < hy - 0.35 * hry) | (view == 1)), HAIR)
    if ident["hat"]:
        paint(_ellipse(Y, X, hy - 0.5 * hry, cx, 0.55 * hry, 1.1 * hrx) & (Y < hy - 0.2 * hry), HAT)
    if ident["bag"] == 1:                      # backpack: full on the back, bulge on the side
        if view == 1:
            paint((np.abs(X - cx) < 0.32 * sw) & (Y > yv(0.19)) & (Y < yv(0.44)), BAG)
        elif view == 2:
            paint((X < cx - 0.4 * sw) & (X > cx - 0.4 * sw - 0.08 * ph) & (Y > yv(0.19))
                  & (Y < yv(0.44)), BAG)
        else:
            for side in (-1, 1):
                paint((np.abs(X - cx - side * 0.3 * sw) < 0.012 * ph) & (Y > yv(0.16))
                      & (Y < yv(0.36)), BAG)
    elif ident["bag"] == 2:                    # shoulder bag with a diagonal strap
        m, _ = _capsule(Y, X, yv(0.16), cx - 0.4 * sw, yv(0.48), cx + 0.5 * sw, 0.01 * ph)
        paint(m, BAG)
        paint(_ellipse(Y, X, yv(0.5), cx + 0.55 * sw, 0.05 * ph, 0.06 * ph), BAG)
    if pose["occ"] is not None:                # something in front: a pole, a car, a railing
        oy0, oy1, ox0, ox1 = pose["occ"]
        Yi, Xi = _grid(h, w)                   # in image coordinates, whatever the view
        paint((Yi >= oy0 * h) & (Yi < oy1 * h) & (Xi >= ox0 * w) & (Xi < ox1 * w), OCC)

    u, v = (X - cx) / ph, (Y - top) / ph
    pat = np.zeros((h, w), bool)
    for code in (TOP, BOTTOM, BAG, HAT):
        if ident["ptype"][code]:
            pat |= (part == code) & _pattern(ident["ptype"][code], ident["pfreq"][code], u, v,
                                             view == 0)
    shade = 1 - np.clip(((X - cx) / (0.6 * sw + 1e-6)) ** 2, 0, 1)
    return Parts(part, pat, shade, warmth)


def random_pose(r: np.random.Generator, h: int, w: int) -> dict:
    occ = None
    if r.random() < 0.25:
        if r.random() < 0.5:                   # from the bottom
            occ = (r.uniform(0.6, 0.85), 1.0, 0.0, 1.0)
        else:                                  # a vertical strip
            x0 = r.uniform(0, 0.8)
            occ = (0.0, 1.0, x0, x0 + r.uniform(0.12, 0.3))
    return dict(scale=r.uniform(0.8, 1.02), dx=r.uniform(-0.1, 0.1) * w, dy=r.uniform(-0.05, 0.05) * h,
                view=int(r.choice(3, p=[0.4, 0.4, 0.2])), stride=r.uniform(0, 0.16),
                swing=r.uniform(-0.05, 0.05), lean=r.uniform(-0.03, 0.03), occ=occ,
                flip=r.random() < 0.5)


# The dual camera looks down from about 6 m on people some 5-8 m away: heads about 10% nearer
# (magnified) than feet, and heights foreshortened against widths.
REGDB_TILT, REGDB_SQUASH = 0.1, 0.88


def walk_pose(seed: int, pid: int, index: int, h: int, w: int) -> dict:
    """Frame `index` of person `pid`'s one walk past RegDB's camera.

    The direction (front: towards the camera) comes from the file name's tag and the mirror state
    is one per walk; the gait phase advances frame by frame (stride and arm swing follow it, with
    a person's own amplitude); scale and position drift slowly (nearer: larger and lower in the
    frame); occluders are rare.  The oblique view is the camera's, the same for every person.
    """
    _, direction, _ = regdb_tags(seed, pid)
    r = np.random.default_rng([seed, pid, 7])
    toward = 1 if direction == "front" else -1
    scale0, grow = r.uniform(0.86, 0.98), toward * r.uniform(0.003, 0.01)
    dx0, vx = r.uniform(-0.06, 0.06) * w, r.uniform(-0.006, 0.006) * w
    dy0 = r.uniform(-0.03, 0.03) * h
    phase = r.uniform(0, 2 * np.pi) + index * r.uniform(0.5, 1.0)
    stride_amp, swing_amp = r.uniform(0.08, 0.16), r.uniform(0.02, 0.05)
    lean, flip = r.uniform(-0.02, 0.02), bool(r.random() < 0.5)
    frame = np.random.default_rng([seed, pid, 8, index])
    occ = None
    if frame.random() < 0.03:
        x0 = frame.uniform(0, 0.8)
        occ = (0.0, 1.0, x0, x0 + frame.uniform(0.12, 0.3))
    return dict(scale=scale0 * (1 + grow * index), dx=dx0 + vx * index, dy=dy0 + 0.3 * grow * index * h,
                view=0 if direction == "front" else 1, stride=stride_amp * abs(np.sin(phase)),
                swing=swing_amp * np.sin(phase), lean=lean, occ=occ, flip=flip,
                tilt=REGDB_TILT, squash=REGDB_SQUASH)


# ----------------------------------------------------------------------------- rendering
SENSORS = ("visible", "nir", "thermal")
# The infrared camera of each layout; LLCM is also low-light in both modalities.
INFRARED_SENSOR = {"sysu": "nir", "llcm": "nir", "regdb": "thermal"}
LOW_LIGHT = {"llcm"}
PAIRED_CAPTURE = {"regdb"}   # one dual camera: the visible and thermal images come in simultaneous pairs


def _objects(r: np.random.Generator, bg: np.ndarray, Y, X, h: int, levels) -> None:
    """Paint a few rectangular objects (doors, signs, cars) into `bg` in place."""
    for _ in range(r.integers(2, 6)):
        y0, x0 = r.uniform(0, h), r.uniform(-X.shape[1] / 4, X.shape[1])
        m = (Y > y0) & (Y < y0 + r.uniform(10, 60) * h / 128) & (X > x0) \
            & (X < x0 + r.uniform(5, 40) * h / 128)
        bg[m] = levels()


@lru_cache(maxsize=64)
def _scene(seed: int, cam: int, sensor: str, h: int, w: int):
    """A camera's fixed background (wall, floor, a few objects) and its level/colour gains."""
    r = np.random.default_rng([seed, 1000 + cam, SENSORS.index(sensor)])
    Y, X = _grid(h, w)
    horizon = r.uniform(0.55, 0.8) * h
    if sensor == "thermal":   # ambient level, warm blobs (lamps, radiators, engines)
        amb = r.uniform(0.25, 0.45)
        bg = np.where(Y < horizon, amb, amb - 0.08 + 0.05 * (Y - horizon) / h)
        for _ in range(r.integers(1, 4)):
            cy, cx, s = r.uniform(0, h), r.uniform(0, w), r.uniform(4, 16) * h / 128
            bg = bg + r.uniform(0.1, 0.4) * np.exp(-((Y - cy) ** 2 + (X - cx) ** 2) / (2 * s * s))
        return bg.astype(np.float32), amb
    if sensor == "nir":       # grey reflectances of wall, floor and objects; illuminator power
        bg = np.where(Y < horizon, r.uniform(0.2, 0.8), r.uniform(0.15, 0.6)).astype(np.float32)
        _objects(r, bg, Y, X, h, lambda: r.uniform(0.05, 0.95))
        return bg, r.uniform(0.8, 1.2)
    wall, floor = r.uniform(0.2, 0.9, 3), r.uniform(0.15, 0.7, 3)
    bg = np.where((Y < horizon)[..., None], wall, floor)
    _objects(r, bg, Y, X, h, lambda: r.uniform(0, 1, 3))
    gain = np.array([1.0, 1.0, 1.0]) + r.uniform(-0.25, 0.25, 3)   # white balance / light colour
    return bg.astype(np.float32), gain * r.uniform(0.75, 1.15)


def _blur(img):
    """3x3 box blur (infrared optics are softer)."""
    p = np.pad(img, 1, mode="edge")
    return sum(p[i:i + img.shape[0], j:j + img.shape[1]] for i in range(3) for j in range(3)) / 9


def _auto_gain(img: np.ndarray) -> np.ndarray:
    """The camera's automatic gain: stretch the 1st-99th percentile range to [0.05, 0.95]."""
    lo, hi = np.percentile(img, [1, 99])
    return 0.05 + 0.9 * (img - lo) / max(hi - lo, 1e-3)


def _thermal(ident, part, pat, shade, warmth, person, bg, amb, r, h, w):
    """Emitted heat, before the camera's optics: body heat through each garment's insulation,
    emitted by its emissivity (the rest reflects the ambient), scaled by `warmth` (skin by place,
    loose fabric); hair, hats and shoes cool; a backpack pressed to the back warmer than a bag at
    the hip.  A dye does not change the heat a fabric emits: only a print of another material
    (`pdelta`) shows."""
    amb = amb + r.uniform(-0.04, 0.04)
    excess = ident["heat"] - amb
    temp = amb + ident["insul"] * excess                         # surface temperature
    level = ident["emis"] * temp + (1 - ident["emis"]) * amb     # emitted + reflected
    level[SKIN] = 0.97 * ident["heat"]
    level[HAIR] = amb + 0.35 * excess
    level[SHOES] = amb + 0.1 * excess
    level[HAT] = amb + 0.15 * excess
    level[BAG] = amb + (0.3 if ident["bag"] == 1 else 0.08) * excess
    level[OCC] = amb + r.uniform(-0.1, 0.25)
    img = amb + warmth * (level[part] - amb) + pat * ident["pdelta"][part]
    img = img * np.where(person & (part != OCC), 0.85 + 0.15 * shade, 1.0)
    return np.where(person, img, bg)


@lru_cache(maxsize=16)
def _column_pattern(seed: int, cam: int, w: int) -> np.ndarray:
    """An uncooled thermal sensor's fixed-pattern noise: one offset per column, the same in every
    frame of the camera."""
    return np.random.default_rng([seed, 1100 + cam]).normal(0, 0.02, w).astype(np.float32)


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edges repeated)."""
    x = np.arange(-int(3 * sigma + 0.5), int(3 * sigma + 0.5) + 1)
    k = np.exp(-x ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    n = len(x) // 2
    p = np.pad(img, n, mode="edge")
    rows = sum(k[i] * p[i:i + img.shape[0]] for i in range(len(k)))
    return sum(k[i] * rows[:, i:i + img.shape[1]] for i in range(len(k)))


def _thermal_optics(img: np.ndarray, seed: int, cam: int, r: np.random.Generator) -> np.ndarray:
    """What the thermal camera makes of the scene's heat: pixels twice as coarse as the visible
    lens's (2x2 means, shown at the visible size), the optics' Gaussian blur, the sensor's column
    pattern and noise, automatic gain."""
    h, w = img.shape
    even = np.pad(img, ((0, h % 2), (0, w % 2)), mode="edge")
    coarse = even.reshape(even.shape[0] // 2, 2, even.shape[1] // 2, 2).mean((1, 3))
    img = _gaussian_blur(np.repeat(np.repeat(coarse, 2, 0), 2, 1)[:h, :w], 0.8)
    return _auto_gain(img + _column_pattern(seed, cam, w) + r.normal(0, 0.02, (h, w)))


def _near_infrared(ident, part, pat, shade, person, bg, power, r, h, w, low_light):
    """Reflected light of the camera's own illuminator: reflectance x illumination, gain, noise."""
    refl = np.where(pat, ident["pnir"][part], ident["nir"][part])
    refl = np.where(part == OCC, r.uniform(0.1, 0.8), refl)
    img = refl * np.where(person & (part != OCC), 0.75 + 0.25 * shade, 1.0)
    Y, X = _grid(h, w)
    falloff = 1 - 0.35 * (((Y - h / 2) / h) ** 2 + ((X - w / 2) / w) ** 2) / 0.5   # beam: bright centre
    # The subject stands closer to the illuminator than the background does.
    img = np.where(person, img * r.uniform(0.9, 1.25), bg * r.uniform(0.45, 0.8)) * falloff * power
    noise = r.uniform(0.02, 0.05) * (2.0 if low_light else 1.0)
    return _auto_gain(_blur(img) + r.normal(0, noise, (h, w)))


def render(ident: dict, pose: dict, cam: int, infrared: bool, r: np.random.Generator,
           h: int, w: int, seed: int = 0, layout: str = "sysu") -> np.ndarray:
    """One (h, w, 3) uint8 image of `ident` in `pose` as camera `cam` of `layout` sees it."""
    sensor = INFRARED_SENSOR[layout] if infrared else "visible"
    low_light = layout in LOW_LIGHT
    part, pat, shade, warmth = draw_parts(ident, pose, h, w)
    bg, cam_param = _scene(seed, cam, sensor, h, w)
    sh = r.integers(-3, 4, 2)
    bg = np.roll(bg, tuple(sh), axis=(0, 1))
    person = part > 0
    if sensor == "thermal":
        img = _thermal(ident, part, pat, shade, warmth, person, bg, cam_param, r, h, w)
        img = np.repeat(_thermal_optics(img, seed, cam, r)[..., None], 3, 2)
    elif sensor == "nir":
        img = _near_infrared(ident, part, pat, shade, person, bg, cam_param, r, h, w, low_light)
        img = np.repeat(img[..., None], 3, axis=2)
    else:
        colour = np.where(pat[..., None], ident["pcolour"][part], ident["colour"][part])
        colour[part == OCC] = r.uniform(0.1, 0.8, 3)
        light = cam_param * r.uniform(0.75, 1.2) * (1 + 0.25 * (0.5 - _grid(h, w)[0] / h))[..., None]
        if low_light:   # dim scenes: less light, more sensor noise, a lifted black level
            light = light * r.uniform(0.2, 0.5)
        img = colour * np.where(person & (part != OCC), 0.7 + 0.3 * shade, 1.0)[..., None]
        img = np.where(person[..., None], img, bg) * light
        img = img + r.normal(0, 0.05 if low_light else 0.02, (h, w, 3)) + (0.03 if low_light else 0)
    if pose["flip"]:
        img = img[:, ::-1]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def image_pose(seed: int, pid: int, cam: int, index: int, infrared: bool, size: tuple[int, int] = (128, 64),
               layout: str = "sysu") -> tuple[dict, np.random.Generator]:
    """The pose of image number `index` of person `pid` in camera `cam`, and the generator that
    draws the rest of that image (light, noise).

    RegDB was recorded with a dual camera: its visible and thermal image number `index` of a
    person are taken at the same moment, frame `index` of the person's walk (`walk_pose`), so
    they share one pose, seen through two lenses side by side (a small shift and scale apart).
    Elsewhere every image has its own pose.
    """
    h, w = size
    r = np.random.default_rng([seed, pid, cam, index, int(infrared)])
    if layout not in PAIRED_CAPTURE:
        return random_pose(r, h, w), r
    pose = walk_pose(seed, pid, index, h, w)
    if infrared:   # the thermal lens: beside the visible one, a slightly different field of view
        pose = dict(pose, dx=pose["dx"] + r.uniform(0.0, 0.05) * w, scale=pose["scale"] * r.uniform(0.95, 1.0))
    return pose, r


def render_image(seed: int, pid: int, cam: int, index: int, infrared: bool,
                 size: tuple[int, int] = (128, 64), layout: str = "sysu") -> np.ndarray:
    """The image number `index` of person `pid` in camera `cam`, deterministic from the seed."""
    pose, r = image_pose(seed, pid, cam, index, infrared, size, layout)
    return render(identity(seed, pid, layout), pose, cam, infrared, r, *size, seed, layout)


# ----------------------------------------------------------------------------- layouts
def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **({"quality": 92} if path.suffix == ".jpg" else {}))


def _render_and_save(job: tuple[Path, tuple]) -> None:
    path, args = job
    _save(render_image(*args), path)


def _render_all(jobs: list[tuple[Path, tuple]]) -> None:
    """Render and write every (path, `render_image` arguments) job, over all cores when there are
    many: each image depends only on its own arguments, so the files are the same either way."""
    from ..threads import available_cores

    workers = min(available_cores(), max(1, len(jobs) // 200))
    if workers == 1:
        for job in jobs:
            _render_and_save(job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for _ in pool.map(_render_and_save, jobs, chunksize=32):
            pass


def _id_line(ids) -> str:
    return ",".join(str(int(i)) for i in sorted(ids)) + "\n"


def _split_counts(n: int, fractions) -> list[int]:
    counts = [max(1, round(n * f)) for f in fractions[1:]]
    return [n - sum(counts)] + counts


def _write_sysu(root: Path, ids: int, seed: int, size, per_cam: int) -> None:
    from scipy.io import savemat

    jobs: list[tuple[Path, tuple]] = []
    r = np.random.default_rng([seed, 1])
    pids = r.permutation(np.arange(1, ids + 1))
    n_train, n_val, n_test = _split_counts(ids, (296 / 491, 99 / 491, 96 / 491))
    splits = np.split(pids, [n_train, n_train + n_val])
    (root / "exp").mkdir(parents=True)
    for name, part in zip(("train_id", "val_id", "test_id"), splits):
        (root / "exp" / f"{name}.txt").write_text(_id_line(part))
    perm = np.empty((6, 1), dtype=object)
    for c in range(6):
        cell = np.empty((ids, 1), dtype=object)
        for i in range(ids):
            cell[i, 0] = np.zeros((0, 0))
        perm[c, 0] = cell
    for pid in range(1, ids + 1):
        rp = np.random.default_rng([seed, 2, pid])
        cams = [c for c in range(1, 7) if rp.random() < 0.8]
        if not set(cams) & set(SYSU_VIS_CAMS):
            cams.append(int(rp.choice(SYSU_VIS_CAMS)))
        if not set(cams) & set(SYSU_IR_CAMS):
            cams.append(int(rp.choice(SYSU_IR_CAMS)))
        for cam in sorted(cams):
            n = max(1, per_cam + int(rp.integers(-1, 2)))
            for k in range(n):
                jobs.append((root / f"cam{cam}" / f"{pid:04d}" / f"{k + 1:04d}.jpg",
                             (seed, pid, cam, k, cam in SYSU_IR_CAMS, size, "sysu")))
            perm[cam - 1, 0][pid - 1, 0] = np.stack(
                [rp.permutation(n) + 1 for _ in range(RAND_PERM_TRIALS)]).astype(np.float64)
    for cam in range(1, 7):
        (root / f"cam{cam}").mkdir(exist_ok=True)
    _render_all(jobs)
    savemat(root / "exp" / "rand_perm_cam.mat", {"rand_perm_cam": perm})


def regdb_split(ids: int, trial: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Trial `trial`'s (train, test) person ids: a seeded half/half split, as RegDB's 10 trials."""
    p = np.random.default_rng([seed, 3, trial]).permutation(np.arange(1, ids + 1))
    return np.sort(p[: ids // 2]), np.sort(p[ids // 2:])


def _write_regdb(root: Path, ids: int, seed: int, size, per_cam: int) -> None:
    jobs: list[tuple[Path, tuple]] = []
    names = {}
    for pid in range(1, ids + 1):
        gender, direction, seq = regdb_tags(seed, pid)
        stem = f"{gender}_{direction}"
        for folder, tag, cam in (("Visible", "v", 1), ("Thermal", "t", 2)):
            names[pid, folder] = []
            for k in range(per_cam):
                rel = f"{folder}/{pid}/{stem}_{tag}_{seq:05d}_{k + 1}.bmp"
                jobs.append((root / rel, (seed, pid, cam, k, folder == "Thermal", size, "regdb")))
                names[pid, folder].append(rel)
    _render_all(jobs)
    (root / "idx").mkdir()
    for t in range(1, 11):
        for part, id_set in zip(("train", "test"), regdb_split(ids, t, seed)):
            for folder, tag in (("Visible", "visible"), ("Thermal", "thermal")):
                lines = [f"{rel} {label}" for label, pid in enumerate(id_set)
                         for rel in names[pid, folder]]
                (root / "idx" / f"{part}_{tag}_{t}.txt").write_text("\n".join(lines) + "\n")


def _write_llcm(root: Path, ids: int, seed: int, size, per_cam: int) -> None:
    jobs: list[tuple[Path, tuple]] = []
    r = np.random.default_rng([seed, 5])
    pids = r.permutation(np.arange(1, ids + 1))
    n_train = ids - max(1, round(ids * 351 / 1064))
    train, test = set(pids[:n_train].tolist()), np.sort(pids[n_train:])
    (root / "idx").mkdir(parents=True)
    (root / "idx" / "test_id.txt").write_text(_id_line(test))
    lines = {"vis": [], "nir": []}
    label = {p: i for i, p in enumerate(sorted(train))}
    for pid in range(1, ids + 1):
        rp = np.random.default_rng([seed, 6, pid])
        cams = sorted(rp.choice(LLCM_CAMS, int(rp.integers(2, 5)), replace=False).tolist())
        if cams == [3]:
            cams.append(4)
        for cam in cams:
            for mod in ("vis", "nir"):
                if mod == "nir" and cam == 3:   # LLCM has no infrared camera 3
                    continue
                seq = int(rp.integers(100000, 999999))
                for k in range(per_cam):
                    name = f"{pid:04d}_c{cam:02d}_s{seq}_f{k * 40 + int(rp.integers(40)):04d}_{mod}.jpg"
                    rel = (f"{mod}/{pid:04d}/{name}" if pid in train
                           else f"test_{mod}/cam{cam}/{pid:04d}/{name}")
                    jobs.append((root / rel, (seed, pid, cam, k, mod == "nir", size, "llcm")))
                    if pid in train:
                        lines[mod].append(f"{rel} {label[pid]}")
    _render_all(jobs)
    for mod in ("vis", "nir"):
        (root / "idx" / f"train_{mod}.txt").write_text("\n".join(lines[mod]) + "\n")


WRITERS = {"sysu": _write_sysu, "regdb": _write_regdb, "llcm": _write_llcm}


def generate(layout: str, out: str | os.PathLike, ids: int | None = None, seed: int = 0,
             size: tuple[int, int] = (128, 64), per_cam: int | None = None) -> Path:
    """Write a synthetic dataset in `layout`'s real on-disk layout to `out` and return it.

    `ids` defaults to a small count (DEFAULT_IDS); REAL_IDS gives the real datasets' sizes.
    `per_cam` = images per identity, camera and modality.  The folder is built under a temporary
    name next to `out` and renamed at the end, so an interrupted run leaves nothing half-written.
    """
    if layout not in WRITERS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    ids = DEFAULT_IDS[layout] if ids is None else int(ids)
    minimum = {"sysu": 3, "regdb": 2, "llcm": 2}[layout]
    if ids < minimum:
        raise ValueError(f"ids={ids}: the {layout} layout needs at least {minimum} identities")
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        WRITERS[layout](tmp, ids, seed, tuple(size), per_cam or DEFAULT_PER_CAM[layout])
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_synthetic(layout: str, cache_dir: str | os.PathLike, ids: int | None = None,
                     seed: int = 0, size: tuple[int, int] = (128, 64),
                     per_cam: int | None = None) -> Path:
    """Generate once into cache_dir/synthetic/<layout>-ids<N>-s<seed>-<H>x<W> and return the root."""
    if layout not in WRITERS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    n = DEFAULT_IDS[layout] if ids is None else int(ids)
    name = (f"{layout}-ids{n}-s{seed}-{size[0]}x{size[1]}" + (f"-k{per_cam}" if per_cam else "")
            + f"-g{GENERATOR_VERSIONS[layout]}")
    root = Path(cache_dir).expanduser() / "synthetic" / name
    if root.is_dir() and any(root.iterdir()):
        return root
    try:
        return generate(layout, root, n, seed, size, per_cam)
    except (FileExistsError, OSError):
        if root.is_dir() and any(root.iterdir()):   # another process finished it first
            return root
        raise


# ----------------------------------------------------------------------------- pixel baseline
def grey_pixel_features(paths, size: tuple[int, int] | None = None) -> np.ndarray:
    """Each image in grey (resized to `size` (H, W) if given), flattened, zero-mean and unit-norm:
    the features of the no-learning baseline."""
    def grey(p):
        img = Image.open(p).convert("L")
        return img.resize((size[1], size[0]), Image.BILINEAR) if size else img
    x = np.stack([np.asarray(grey(p), np.float32).ravel() for p in paths])
    x -= x.mean(1, keepdims=True)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)


def _rank1(q, g, q_ids, g_ids, exclude=None) -> float:
    d = -q @ g.T
    if exclude is not None:
        d[exclude] = np.inf
    return float(np.mean(g_ids[np.argmin(d, axis=1)] == q_ids))


def pixel_matching_rank1(root: str | os.PathLike, dataset: str = "sysu",
                         size: tuple[int, int] | None = None) -> dict[str, float]:
    """Rank-1 of nearest-neighbour matching on raw grey pixels over every image of `root`.

    Features: each image in grey (resized to `size` (H, W) if given: the network's input size
    costs a quarter of the stored 128x64), flattened, zero-mean and unit-norm (so global
    brightness and contrast do not count).  'ir->vis' = every IR image against every visible image (the
    cross-modal task); 'vis->vis' / 'ir->ir' = each image against the other images of its own
    modality (leave-one-out); '... other cams' excludes the query's own camera; 'chance' = the
    expected rank-1 of a random guess for 'ir->vis'.
    """
    from .readers import read_test, read_train

    train, _ = read_train(dataset, root)
    test = read_test(dataset, root)
    vis_g, ir_g = (test.gallery, test.query) if test.query.modality == "infrared" \
        else (test.query, test.gallery)
    vp = train.visible.paths + vis_g.paths
    ip = train.infrared.paths + ir_g.paths
    vid = np.concatenate([train.visible.pids, vis_g.pids])
    iid = np.concatenate([train.infrared.pids, ir_g.pids])
    vc = np.concatenate([train.visible.cams, vis_g.cams])
    ic = np.concatenate([train.infrared.cams, ir_g.cams])
    v, i = grey_pixel_features(vp, size), grey_pixel_features(ip, size)
    out = {"ir->vis": _rank1(i, v, iid, vid), "vis->ir": _rank1(v, i, vid, iid)}
    for name, f, ids, cams in (("vis->vis", v, vid, vc), ("ir->ir", i, iid, ic)):
        same = np.eye(len(ids), dtype=bool)
        out[name] = _rank1(f, f, ids, ids, same)
        out[name + " other cams"] = _rank1(f, f, ids, ids, same | (cams[:, None] == cams[None]))
    out["chance"] = float(np.mean([(vid == p).mean() for p in iid]))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m djanet.data.synthetic",
                                description="Write a synthetic VI-ReID dataset in a real layout.")
    p.add_argument("--layout", required=True, choices=LAYOUTS)
    p.add_argument("--out", required=True, help="new folder to write")
    p.add_argument("--ids", type=int, default=None, help="identities (default: small; "
                   f"real sizes: {REAL_IDS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"))
    p.add_argument("--per-cam", type=int, default=None, help="images per id, camera, modality")
    p.add_argument("--pixel-baseline", action="store_true",
                   help="print grey-pixel nearest-neighbour rank-1 within and across modalities")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    root = generate(a.layout, a.out, a.ids, a.seed, tuple(a.size), a.per_cam)
    n = sum(1 for f in root.rglob("*") if f.suffix in (".jpg", ".bmp"))
    print(f"wrote {n} images to {root} in {time.perf_counter() - t0:.1f} s")
    if a.pixel_baseline:
        for k, v in pixel_matching_rank1(root, a.layout).items():
            print(f"{k:>20s}: {100 * v:5.1f}%")


if __name__ == "__main__":
    main()
