"""Synthetic raw skeleton data in the NTU RGB+D `.skeleton` and PKU-MMD formats (the embedded default).

A kinematic 25-joint body (NTU joint numbering) with per-subject bone lengths is driven by
joint-angle programs, one per action class, then seen by up to three Kinect-like cameras (yaw,
distance, height and tilt per camera and setup) with sensor noise, in metres, camera space.

Classes differ in what moves and how (which limbs, a rhythm, a single movement there and back,
two persons), as in real NTU, not in a static pose alone; one pair plays the same poses in opposite
time order (kneel down / rise from kneeling). Each clip carries the nuisance that defeats template
matching on the coordinates and that a skeleton encoder must learn to ignore: per-subject bone
lengths, posture and handedness, the movement's timing, speed and amplitude, idle sway, a distractor
motion of a free limb in a third of the clips, the cameras' residual tilt and roll, sensor jitter and
tracking glitches, and, for two persons, their spacing and who is listed first. Every clip length is
drawn from one distribution for all classes. Every random choice flows from `seed` (and the name of
the sample), so one seed always gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from hiclr.common.atomic import atomic_write_bytes
from hiclr.common.errors import UserError

V = 25
# 0-based parent of each joint (NTU numbering minus one); thumbs and tips hang from the hand.
PARENT = np.array([-1, 0, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18, 1, 7, 7, 11, 11])
ORDER = [0, 1, 20, 2, 3, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11, 23, 24, 12, 13, 14, 15, 16, 17, 18, 19]
# Body frame: x = the person's right, y = up, z = backwards (the person faces -z, toward camera 1).
_DIRS = {
    1: (0, 1, 0),
    20: (0, 1, 0),
    2: (0, 1, 0),
    3: (0, 1, -0.15),
    4: (-1, -0.2, 0),
    8: (1, -0.2, 0),
    5: (0, -1, 0),
    9: (0, -1, 0),
    6: (0, -1, 0),
    10: (0, -1, 0),
    7: (0, -1, 0),
    11: (0, -1, 0),
    21: (0, -1, 0),
    23: (0, -1, 0),
    22: (0.4, -0.6, -0.7),
    24: (-0.4, -0.6, -0.7),
    12: (-1, -0.35, 0),
    16: (1, -0.35, 0),
    13: (0, -1, 0),
    17: (0, -1, 0),
    14: (0, -1, 0),
    18: (0, -1, 0),
    15: (0, -0.35, -1),
    19: (0, -0.35, -1),
}
_LENGTHS = {
    1: 0.27,
    20: 0.24,
    2: 0.07,
    3: 0.12,
    4: 0.16,
    8: 0.16,
    5: 0.27,
    9: 0.27,
    6: 0.25,
    10: 0.25,
    7: 0.07,
    11: 0.07,
    21: 0.07,
    23: 0.07,
    22: 0.05,
    24: 0.05,
    12: 0.09,
    16: 0.09,
    13: 0.42,
    17: 0.42,
    14: 0.40,
    18: 0.40,
    15: 0.13,
    19: 0.13,
}
DIRECTION = np.zeros((V, 3))
BASE_LENGTH = np.zeros(V)
for _j, _d in _DIRS.items():
    DIRECTION[_j] = np.asarray(_d, dtype=float) / np.linalg.norm(_d)
    BASE_LENGTH[_j] = _LENGTHS[_j]
MIRROR = [(4, 8), (5, 9), (6, 10), (7, 11), (21, 23), (22, 24), (12, 16), (13, 17), (14, 18), (15, 19)]
FEET = [14, 15, 18, 19]
EXTREMITIES = [3, 6, 7, 10, 11, 14, 15, 18, 19, 21, 22, 23, 24]
# Angle channels (radians) of the bone ending at each joint: 0 pitch (about x; + swings an arm or a
# thigh forward), 1 yaw (about y; + turns toward the person's left), 2 roll (about z; + toward the right).
PITCH, YAW, ROLL = 0, 1, 2
L_UPPER, L_FORE, R_UPPER, R_FORE = 5, 6, 9, 10
L_THIGH, L_SHANK, L_FOOT, R_THIGH, R_SHANK, R_FOOT = 13, 14, 15, 17, 18, 19
SPINE_LOW, SPINE_UP, NECK = 1, 20, 2

NTU60_TRAIN_SUBJECTS = [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]
NTU60_TEST_SUBJECTS = [3, 6, 7, 10, 11, 12, 20, 21, 22, 23, 24, 26, 29, 30, 32, 33, 36, 37, 39, 40]
CAMERA_YAW_DEG = {1: 0.0, 2: -45.0, 3: 45.0}  # NTU: three cameras at -45, 0, +45 degrees
PKU_VIEWS = {"L": 3, "M": 1, "R": 2}  # PKU-MMD view -> camera placement
MISSING_SAMPLE = "S001C002P005R002A008"  # on the official NTU60 missing-skeleton list
BODY_ID_BASE = 72057594037927936  # 2**56: real bodyIDs look like 7205759403793xxxx


# ------------------------------------------------------------------------------------ kinematics


def _rot(axis: int, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(np.shape(angle) + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[..., axis, axis] = 1.0
    out[..., i, i], out[..., j, j] = c, c
    out[..., i, j], out[..., j, i] = -s, s
    return out


def local_rotations(angles: np.ndarray) -> np.ndarray:
    """(..., 3) pitch, yaw, roll -> (..., 3, 3) rotation Ry(yaw) Rz(roll) Rx(pitch)."""
    return _rot(1, angles[..., YAW]) @ _rot(2, angles[..., ROLL]) @ _rot(0, angles[..., PITCH])


def forward_kinematics(lengths: np.ndarray, angles: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Joint positions (T, V, 3) relative to the base of the spine, in the world frame.

    `angles` (T, V, 3) rotate the bone that ends at each joint relative to its parent bone; `yaw`
    (T,) turns the whole body about the vertical axis.
    """
    local = local_rotations(angles)
    glob = np.empty_like(local)
    pos = np.zeros(angles.shape[:2] + (3,))
    glob[:, 0] = _rot(1, yaw) @ local[:, 0]
    for j in ORDER[1:]:
        p = PARENT[j]
        glob[:, j] = glob[:, p] @ local[:, j]
        pos[:, j] = pos[:, p] + glob[:, j] @ (DIRECTION[j] * lengths[j])
    return pos


def rest_angles(T: int) -> np.ndarray:
    """The relaxed standing pose: arms slightly away from the body, elbows a little bent."""
    a = np.zeros((T, V, 3))
    a[:, L_UPPER, ROLL], a[:, R_UPPER, ROLL] = -0.12, 0.12
    a[:, L_FORE, PITCH] = a[:, R_FORE, PITCH] = 0.15
    return a


# ------------------------------------------------------------------------------------- actions


def ramp(u: np.ndarray, a: float, b: float) -> np.ndarray:
    """Smooth step from 0 (u <= a) to 1 (u >= b)."""
    x = np.clip((u - a) / (b - a), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _pulse(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One fast-out, slow-back movement (punch, kick); its time reverse is slow-out, fast-back."""
    a = rng.uniform(0.05, 0.15)
    up = rng.uniform(0.12, 0.18)
    hold = rng.uniform(0.1, 0.2)
    return ramp(u, a, a + up) * (1.0 - ramp(u, a + up + hold, min(a + up + hold + rng.uniform(0.4, 0.55), 1.0)))


@dataclass
class Motion:
    """One person's motion over T frames: angles added to the rest pose, turning, body-frame shift, lift."""

    angles: np.ndarray  # (T, V, 3)
    yaw: np.ndarray  # (T,)
    shift: np.ndarray  # (T, 3) body frame (forward is -z)
    lift: np.ndarray  # (T,) metres above the floor contact

    @classmethod
    def still(cls, T: int) -> Motion:
        return cls(rest_angles(T), np.zeros(T), np.zeros((T, 3)), np.zeros(T))


# Every program takes (u, amp, rng, motion(s), style): `style` 0 or 1 picks one of two ways people
# perform the action (arms forward or sideways, a straight or a hook punch ...); each subject has a
# habit, so a template of one subject's style does not match another's.


def _raise_arms(u, amp, rng, m, style):
    e = ramp(u, 0.0, rng.uniform(0.55, 0.8))
    for upper, side in ((L_UPPER, -1), (R_UPPER, 1)):
        if style == 0:  # forward and up
            m.angles[:, upper, PITCH] += 2.7 * amp * e
            m.angles[:, upper, ROLL] += side * 0.25 * e
        else:  # out to the sides and up
            m.angles[:, upper, ROLL] += side * 2.5 * amp * e
            m.angles[:, upper, PITCH] += 0.3 * e
    m.angles[:, [L_FORE, R_FORE], PITCH] -= 0.15 * e[:, None]


def _squat(u, amp, rng, m, style):
    e = ramp(u, 0.0, rng.uniform(0.55, 0.8))
    for thigh, shank, foot in ((L_THIGH, L_SHANK, L_FOOT), (R_THIGH, R_SHANK, R_FOOT)):
        m.angles[:, thigh, PITCH] += 1.5 * amp * e
        m.angles[:, shank, PITCH] -= 2.0 * amp * e
        m.angles[:, foot, PITCH] += 0.5 * amp * e  # keeps the foot flat on the floor
    m.angles[:, SPINE_LOW, PITCH] -= 0.5 * e
    if style == 0:  # arms forward for balance
        m.angles[:, [L_UPPER, R_UPPER], PITCH] += 1.3 * e[:, None]
    else:  # hands on the knees
        m.angles[:, [L_UPPER, R_UPPER], PITCH] += 0.6 * e[:, None]
        m.angles[:, [L_FORE, R_FORE], PITCH] += 0.5 * e[:, None]


def _bend_down(u, amp, rng, m, style):
    e = ramp(u, 0.0, rng.uniform(0.55, 0.8))
    m.angles[:, SPINE_LOW, PITCH] -= 1.1 * amp * e
    m.angles[:, SPINE_UP, PITCH] -= 0.3 * e
    m.angles[:, NECK, PITCH] += 0.4 * e
    if style == 0:  # arms hang toward the floor
        m.angles[:, [L_UPPER, R_UPPER], PITCH] += 1.3 * amp * e[:, None]
    else:  # hands behind the back
        m.angles[:, [L_UPPER, R_UPPER], PITCH] -= 0.5 * e[:, None]
        m.angles[:, [L_FORE, R_FORE], PITCH] += 1.2 * e[:, None]


def _kneel(u, amp, rng, m, style):
    e = ramp(u, 0.0, rng.uniform(0.55, 0.8))
    front, back = ((L_THIGH, L_SHANK, L_FOOT), (R_THIGH, R_SHANK, R_FOOT))[:: 1 if style == 0 else -1]
    m.angles[:, front[0], PITCH] += 1.5 * amp * e  # one knee up in front
    m.angles[:, front[1], PITCH] -= 1.5 * amp * e
    m.angles[:, front[2], PITCH] += 0.2 * e
    m.angles[:, back[0], PITCH] -= 0.2 * e  # the other knee on the floor
    m.angles[:, back[1], PITCH] -= 1.6 * amp * e
    m.angles[:, back[2], PITCH] += 1.0 * e
    m.angles[:, [L_UPPER, R_UPPER], PITCH] += 0.3 * e[:, None]


def _punch(u, amp, rng, m, style):
    m.angles[:, [L_UPPER, R_UPPER], PITCH] += 0.5  # guard
    m.angles[:, [L_FORE, R_FORE], PITCH] += 1.9
    p = _pulse(u, rng)
    if style == 0:  # straight punch
        m.angles[:, R_UPPER, PITCH] += 1.0 * amp * p
        m.angles[:, R_FORE, PITCH] -= 1.9 * p
    else:  # hook: the elbow swings round
        m.angles[:, R_UPPER, ROLL] += 1.1 * amp * p
        m.angles[:, R_UPPER, PITCH] += 0.6 * p
        m.angles[:, R_FORE, YAW] += 0.9 * p
        m.angles[:, R_FORE, PITCH] -= 0.6 * p
    m.angles[:, SPINE_UP, YAW] += 0.35 * p


def _kick(u, amp, rng, m, style):
    p = _pulse(u, rng)
    if style == 0:  # front kick
        m.angles[:, R_THIGH, PITCH] += 1.3 * amp * p
        m.angles[:, R_SHANK, PITCH] -= 0.9 * np.sin(np.pi * p) + 0.1 * p
    else:  # side kick
        m.angles[:, R_THIGH, ROLL] += 1.0 * amp * p
        m.angles[:, R_THIGH, PITCH] += 0.3 * p
        m.angles[:, R_SHANK, PITCH] -= 0.7 * np.sin(np.pi * p)
        m.angles[:, SPINE_LOW, ROLL] -= 0.25 * p
    m.angles[:, L_UPPER, PITCH] += 0.4 * p
    m.angles[:, R_UPPER, PITCH] -= 0.3 * p
    m.angles[:, SPINE_LOW, PITCH] += 0.2 * p


def _wave(u, amp, rng, m, style):
    e = ramp(u, 0.0, 0.2) * (1.0 - ramp(u, 0.8, 1.0))
    osc = np.sin(2 * np.pi * rng.uniform(2.0, 5.0) * u + rng.uniform(0, 2 * np.pi))
    if style == 0:  # hand high, waving sideways
        m.angles[:, R_UPPER, ROLL] += 1.35 * amp * e
        m.angles[:, R_FORE, ROLL] += (1.4 + 0.45 * osc) * e
    else:  # arm forward, hand waving
        m.angles[:, R_UPPER, PITCH] += 1.6 * amp * e
        m.angles[:, R_FORE, PITCH] += 0.6 * e
        m.angles[:, R_FORE, ROLL] += 0.5 * osc * e


def _clap(u, amp, rng, m, style):
    e = ramp(u, 0.0, 0.2) * (1.0 - ramp(u, 0.8, 1.0))
    opening = 0.35 * amp * (1.0 + np.cos(2 * np.pi * rng.uniform(2.0, 5.0) * u))
    lift = 1.3 if style == 0 else 2.4  # in front of the chest or overhead
    m.angles[:, [L_UPPER, R_UPPER], PITCH] += lift * e[:, None]
    m.angles[:, L_UPPER, YAW] += opening * e
    m.angles[:, R_UPPER, YAW] -= opening * e
    m.angles[:, [L_FORE, R_FORE], PITCH] += 0.3 * e[:, None]


def _jump(u, amp, rng, m, style):
    crouch = ramp(u, 0.05, 0.3) * (1 - ramp(u, 0.32, 0.4)) + 0.8 * ramp(u, 0.6, 0.66) * (1 - ramp(u, 0.7, 0.9))
    flight = np.clip((u - 0.4) / 0.22, 0.0, 1.0)
    air = 4.0 * flight * (1.0 - flight)
    for thigh, shank, foot in ((L_THIGH, L_SHANK, L_FOOT), (R_THIGH, R_SHANK, R_FOOT)):
        m.angles[:, thigh, PITCH] += 0.9 * amp * crouch
        m.angles[:, shank, PITCH] -= 1.4 * amp * crouch
        m.angles[:, foot, PITCH] += 0.5 * amp * crouch
    m.angles[:, SPINE_LOW, PITCH] -= 0.3 * crouch
    swing = (1.2 * air - 0.6 * crouch) if style == 0 else 0.3 * air  # arms swing up, or stay low
    m.angles[:, [L_UPPER, R_UPPER], PITCH] += swing[:, None]
    m.lift += rng.uniform(0.15, 0.3) * amp * air


def _push(u, amp, rng, pair, style):
    a, b = pair
    reach = ramp(u, 0.1, 0.35) * (1.0 - 0.5 * ramp(u, 0.7, 0.95))
    hands = [L_UPPER, R_UPPER] if style == 0 else [R_UPPER]  # with both hands or one
    a.angles[:, hands, PITCH] += 1.45 * reach[:, None]
    a.angles[:, [L_FORE, R_FORE], PITCH] += (1.6 * reach * (1.0 - ramp(u, 0.35, 0.5)))[:, None]
    a.shift[:, 2] -= 0.15 * ramp(u, 0.35, 0.5)
    hit = ramp(u, 0.38, 0.6)
    b.shift[:, 2] += rng.uniform(0.25, 0.45) * amp * hit
    b.angles[:, SPINE_LOW, PITCH] += 0.35 * np.sin(np.pi * ramp(u, 0.38, 0.85)) + 0.15 * hit
    b.angles[:, [L_UPPER, R_UPPER], PITCH] += (0.6 * np.sin(np.pi * ramp(u, 0.38, 0.85)))[:, None]
    b.angles[:, R_THIGH, PITCH] -= 0.45 * hit  # the partner steps back, and stays
    b.angles[:, R_SHANK, PITCH] -= 0.3 * hit


def _handshake(u, amp, rng, pair, style):
    e = ramp(u, 0.0, 0.25) * (1.0 - ramp(u, 0.75, 1.0))
    shaking = ramp(u, 0.25, 0.3) * (1.0 - ramp(u, 0.7, 0.75))
    osc = np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * u)
    for m in pair:
        m.angles[:, R_UPPER, PITCH] += 0.75 * amp * e
        m.angles[:, R_UPPER, YAW] += 0.35 * e
        m.angles[:, R_FORE, PITCH] += 0.5 * e + 0.18 * osc * shaking
        m.shift[:, 2] -= 0.1 * e
    if style == 1:  # the other hand on the partner's arm
        pair[0].angles[:, L_UPPER, PITCH] += 0.9 * e
        pair[0].angles[:, L_UPPER, YAW] -= 0.4 * e
        pair[0].angles[:, L_FORE, PITCH] += 0.8 * e


def _there_and_back(program):
    """The program played to its peak and back within the window (raise and lower, down and up)."""

    def cycle(u, amp, rng, m, style):
        return program(np.minimum(u, 1.0 - u) * 2.0, amp, rng, m, style)

    cycle.__name__ = program.__name__ + "_cycle"
    return cycle


def _osc(u, rng, low=2.0, high=4.0):
    """A rhythm of a few cycles over the movement window."""
    return np.sin(2 * np.pi * rng.uniform(low, high) * u + rng.uniform(0, 2 * np.pi))


def _window(u):
    return ramp(u, 0.0, 0.15) * (1.0 - ramp(u, 0.85, 1.0))


def _march(u, amp, rng, m, style):
    e = _window(u)
    phase = 2 * np.pi * rng.uniform(2.0, 3.5) * u
    for k, (thigh, shank, upper) in enumerate(((L_THIGH, L_SHANK, R_UPPER), (R_THIGH, R_SHANK, L_UPPER))):
        lift = np.clip(np.sin(phase + np.pi * k), 0.0, None)
        m.angles[:, thigh, PITCH] += 1.2 * amp * lift * e
        m.angles[:, shank, PITCH] -= 1.3 * amp * lift * e
        if style == 0:  # arms swing along
            m.angles[:, upper, PITCH] += 0.6 * np.sin(phase + np.pi * k) * e


def _arm_circles(u, amp, rng, m, style):
    e = _window(u)
    phase = 2 * np.pi * rng.uniform(1.5, 3.0) * u
    arms = (R_UPPER,) if style == 0 else (L_UPPER, R_UPPER)
    for upper in arms:
        side = 1.0 if upper == R_UPPER else -1.0
        m.angles[:, upper, ROLL] += side * (1.5 + 0.8 * amp * np.sin(phase)) * e
        m.angles[:, upper, PITCH] += 0.8 * amp * np.cos(phase) * e


def _side_bend(u, amp, rng, m, style):
    e = _window(u)
    sway = _osc(u, rng, 1.0, 2.0)
    m.angles[:, SPINE_LOW, ROLL] += 0.45 * amp * sway * e
    m.angles[:, SPINE_UP, ROLL] += 0.25 * amp * sway * e
    if style == 0:  # hands on the hips
        m.angles[:, [L_FORE, R_FORE], PITCH] += 1.4 * e[:, None]
        m.angles[:, L_UPPER, ROLL] -= 0.5 * e
        m.angles[:, R_UPPER, ROLL] += 0.5 * e
    else:  # arms overhead
        m.angles[:, [L_UPPER, R_UPPER], PITCH] += 2.6 * e[:, None]


def _jumping_jacks(u, amp, rng, m, style):
    e = _window(u)
    open_ = 0.5 * (1.0 - np.cos(2 * np.pi * rng.uniform(2.0, 3.5) * u))
    m.angles[:, L_UPPER, ROLL] -= 2.6 * amp * open_ * e
    m.angles[:, R_UPPER, ROLL] += 2.6 * amp * open_ * e
    m.angles[:, L_THIGH, ROLL] -= 0.35 * open_ * e
    m.angles[:, R_THIGH, ROLL] += 0.35 * open_ * e
    m.lift += 0.08 * amp * np.abs(np.sin(np.pi * open_)) * e


def _shake_head(u, amp, rng, m, style):
    e = _window(u)
    m.angles[:, NECK, YAW] += 0.9 * amp * _osc(u, rng, 2.5, 4.5) * e
    if style == 1:  # arms crossed
        m.angles[:, [L_UPPER, R_UPPER], PITCH] += 0.5 * e[:, None]
        m.angles[:, [L_FORE, R_FORE], PITCH] += 1.6 * e[:, None]
        m.angles[:, L_FORE, YAW] -= 0.8 * e
        m.angles[:, R_FORE, YAW] += 0.8 * e


def _swipe(u, amp, rng, m, style):
    e = _window(u)
    sweep = _osc(u, rng, 1.5, 3.0)
    m.angles[:, R_UPPER, PITCH] += (1.4 if style == 0 else 0.9) * e  # the arm ahead, or lower
    m.angles[:, R_UPPER, YAW] += 0.9 * amp * sweep * e  # sweeping across the body
    m.angles[:, R_FORE, PITCH] += 0.2 * e


@dataclass(frozen=True)
class Action:
    """One class: a program that adds its movement to the rest motion(s), maybe played backwards.

    `uses` names the limb groups the program moves (`left_arm`, `right_arm`, `legs`, `torso`,
    `head`); distractor motions only go to the others, so they never imitate another class.
    """

    name: str
    program: Callable
    persons: int = 1
    reverse: bool = False
    uses: frozenset = frozenset()


ARMS, LEGS_TORSO = frozenset({"left_arm", "right_arm"}), frozenset({"legs", "torso"})
# One class per row; `reverse` plays a program backwards (the one time-reversed pair).
ACTIONS: tuple[Action, ...] = (
    Action("raise and lower arms", _there_and_back(_raise_arms), uses=ARMS),
    Action("squat", _there_and_back(_squat), uses=ARMS | LEGS_TORSO),
    Action("bow", _there_and_back(_bend_down), uses=ARMS | {"torso", "head"}),
    Action("kneel down", _kneel, uses=LEGS_TORSO),
    Action("rise from kneeling", _kneel, reverse=True, uses=LEGS_TORSO),
    Action("punch", _punch, uses=ARMS | {"torso"}),
    Action("kick", _kick, uses=LEGS_TORSO),
    Action("wave", _wave, uses=frozenset({"right_arm"})),
    Action("clap", _clap, uses=ARMS),
    Action("jump", _jump, uses=ARMS | LEGS_TORSO),
    Action("march in place", _march, uses=ARMS | LEGS_TORSO),
    Action("arm circles", _arm_circles, uses=ARMS),
    Action("side bend", _side_bend, uses=ARMS | {"torso"}),
    Action("shake head", _shake_head, uses=ARMS | {"head"}),
    Action("swipe", _swipe, uses=frozenset({"right_arm"})),
    Action("jumping jacks", _jumping_jacks, uses=ARMS | LEGS_TORSO),
    Action("push", _push, persons=2, uses=ARMS | {"torso"}),
    Action("handshake", _handshake, persons=2, uses=frozenset({"right_arm"})),
)


# ---------------------------------------------------------------------- distractors, mirroring

_ARM = {"left_arm": (L_UPPER, L_FORE, -1.0), "right_arm": (R_UPPER, R_FORE, 1.0)}
_LEG = {"left_leg": (L_THIGH, L_SHANK, -1.0), "right_leg": (R_THIGH, R_SHANK, 1.0)}


def _scratch_head(e, rng, m, limb):
    upper, fore, side = _ARM[limb]
    m.angles[:, upper, PITCH] += rng.uniform(1.8, 2.5) * e
    m.angles[:, upper, ROLL] += side * 0.45 * e
    m.angles[:, fore, PITCH] += (1.9 + 0.2 * np.sin(2 * np.pi * rng.uniform(3, 6) * np.linspace(0, 1, len(e)))) * e


def _hand_on_hip(e, rng, m, limb):
    upper, fore, side = _ARM[limb]
    m.angles[:, upper, ROLL] += side * rng.uniform(0.35, 0.6) * e
    m.angles[:, fore, PITCH] += rng.uniform(1.3, 1.8) * e


def _arm_swing(e, rng, m, limb):
    upper, fore, _ = _ARM[limb]
    osc = np.sin(2 * np.pi * rng.uniform(1.0, 3.0) * np.linspace(0, 1, len(e)) + rng.uniform(0, 6.3))
    m.angles[:, upper, PITCH] += rng.uniform(0.3, 0.6) * osc * e
    m.angles[:, fore, PITCH] += 0.3 * e


def _look_around(e, rng, m, limb):
    osc = np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * np.linspace(0, 1, len(e)) + rng.uniform(0, 6.3))
    m.angles[:, NECK, YAW] += rng.uniform(0.6, 1.1) * osc * e
    m.angles[:, NECK, PITCH] += rng.normal(0, 0.2) * e


def _weight_shift(e, rng, m, limb):
    side = rng.choice([-1.0, 1.0])
    m.angles[:, SPINE_LOW, ROLL] += side * rng.uniform(0.08, 0.16) * e
    m.angles[:, [L_THIGH, R_THIGH], ROLL] -= side * 0.08 * e[:, None]
    m.angles[:, SPINE_UP, PITCH] += rng.normal(0, 0.1) * e


def _foot_tap(e, rng, m, limb):
    thigh, shank, _ = _LEG[rng.choice(list(_LEG))]
    tap = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(2, 5) * np.linspace(0, 1, len(e))))
    m.angles[:, thigh, PITCH] += 0.15 * tap * e
    m.angles[:, shank, PITCH] -= 0.35 * tap * e


# distractor -> the limb groups it may take (it needs one that the action leaves free)
DISTRACTORS: tuple[tuple[Callable, tuple[str, ...]], ...] = (
    (_scratch_head, ("left_arm", "right_arm")),
    (_hand_on_hip, ("left_arm", "right_arm")),
    (_arm_swing, ("left_arm", "right_arm")),
    (_look_around, ("head",)),
    (_weight_shift, ("torso",)),
    (_foot_tap, ("legs",)),
)


def mirror(m: Motion) -> Motion:
    """The same motion by the other side of the body (left and right swapped, yaw and roll negated)."""
    angles = m.angles.copy()
    for left, right in MIRROR:
        angles[:, [left, right]] = angles[:, [right, left]]
    angles[..., YAW] *= -1.0
    angles[..., ROLL] *= -1.0
    return Motion(angles, -m.yaw, m.shift * np.array([-1.0, 1.0, 1.0]), m.lift.copy())


def _mirror_uses(uses: frozenset) -> frozenset:
    swap = {"left_arm": "right_arm", "right_arm": "left_arm"}
    return frozenset(swap.get(u, u) for u in uses)


@dataclass(frozen=True, eq=False)
class Performer:
    """How one subject moves: bone lengths, habitual posture, handedness, vigour and tempo."""

    lengths: np.ndarray
    posture: np.ndarray = field(default_factory=lambda: np.zeros((V, 3)))  # added to the rest angles
    left_handed: bool = False
    vigour: float = 1.0
    tempo: float = 0.0  # > 0: starts fast and slows down; < 0: the reverse
    habit: float = 0.5  # chance of style 1 of an action (see the programs)


def performer(seed: int, subject: int) -> Performer:
    """The traits of `subject` (the same in every clip of the subject and seed)."""
    rng = np.random.default_rng([seed, subject, 4])
    posture = np.zeros((V, 3))
    posture[SPINE_LOW, PITCH] = rng.normal(0, 0.15)  # slouch or upright
    posture[SPINE_LOW, ROLL] = rng.normal(0, 0.05)  # leaning to one side
    posture[SPINE_UP, PITCH] = rng.normal(0, 0.12)
    posture[NECK, PITCH] = rng.normal(0, 0.2)
    posture[NECK, ROLL] = rng.normal(0, 0.1)
    carriage = rng.uniform(-0.05, 0.35)  # arms held away from the body
    posture[L_UPPER, ROLL], posture[R_UPPER, ROLL] = -carriage, carriage
    posture[[L_UPPER, R_UPPER], PITCH] = rng.normal(0, 0.15)  # arms a little forward or back
    posture[[L_FORE, R_FORE], PITCH] = rng.uniform(0.0, 0.8)  # elbows bent
    stance = rng.uniform(-0.02, 0.16)
    posture[L_THIGH, ROLL], posture[R_THIGH, ROLL] = -stance, stance
    posture[[L_SHANK, R_SHANK], PITCH] = -rng.uniform(0.0, 0.25)  # soft knees
    return Performer(
        lengths=body_lengths(seed, subject),
        posture=posture,
        left_handed=bool(rng.random() < 0.5),
        vigour=float(rng.uniform(0.8, 1.2)),
        tempo=float(rng.uniform(-0.2, 0.2)),
        habit=float(rng.choice([0.15, 0.85])),
    )


def _envelope(T: int, rng: np.random.Generator) -> np.ndarray:
    """A distractor's presence over the clip: on somewhere for 25 to 70 % of it, smooth edges."""
    span = rng.uniform(0.25, 0.7)
    a = rng.uniform(0.0, 1.0 - span)
    u = np.linspace(0.0, 1.0, T)
    edge = min(0.1, span / 3)
    return ramp(u, a, a + edge) * (1.0 - ramp(u, a + span - edge, a + span))


@dataclass(frozen=True)
class Nuisance:
    """The nuisance a family's clips carry (the defaults are the embedded default's)."""

    distractor: float = 0.34  # chance of a distractor motion on a free limb
    other_side: float = 0.25  # chance of performing with the non-preferred side
    span: tuple = (0.55, 0.9)  # the movement's window, a fraction of the clip
    amplitude: tuple = (0.75, 1.2)  # the movement's amplitude (times the performer's vigour)
    length_median: float = 80.0  # clip length in frames: log-normal median ...
    length_spread: float = 0.4  # ... and sigma of its log
    noise: float = 1.0  # sensor jitter, times the Kinect-like default
    glitches: tuple = (0.3, 0.2)  # chance of a jumping joint, of a frozen limb, per body
    lean: float = 0.2  # per-clip camera tilt (slope, lean) sigma, radians


DEFAULT_NUISANCE = Nuisance()


def perform(
    action: Action,
    T: int,
    rng: np.random.Generator,
    who: list[Performer] | None = None,
    nuisance: Nuisance = DEFAULT_NUISANCE,
) -> list[Motion]:
    """Draw one performance of `action` over T frames by `who` (one performer per person).

    The movement takes a random window of the clip (`nuisance.span`) at a varying speed (a monotone time
    warp), with a random amplitude, by the performer's preferred side (sometimes the other), on top
    of the performer's posture, idle sway and, often, a distractor on a limb the action leaves free.
    """
    who = list(who) if who is not None else [Performer(BASE_LENGTH)] * action.persons
    s = np.linspace(0.0, 1.0, T)
    if action.reverse:
        s = s[::-1]
    warp = np.clip(who[0].tempo + rng.normal(0, 0.08), -0.3, 0.3)
    s = s + warp * np.sin(np.pi * s) / np.pi  # monotone: speed 1 + warp cos(pi s) > 0
    span = rng.uniform(*nuisance.span)
    start = rng.uniform(0.0, 1.0 - span)
    u = np.clip((s - start) / span, 0.0, 1.0)
    amp = rng.uniform(*nuisance.amplitude) * who[0].vigour
    zero = lambda: Motion(np.zeros((T, V, 3)), np.zeros(T), np.zeros((T, 3)), np.zeros(T))  # noqa: E731
    moves = [zero() for _ in range(action.persons)]
    style = int(rng.random() < who[0].habit)
    action.program(u, amp, rng, moves if action.persons == 2 else moves[0], style)
    other_side = rng.random() < nuisance.other_side
    uses = action.uses
    if action.persons == 1 and who[0].left_handed != other_side:
        moves, uses = [mirror(moves[0])], _mirror_uses(uses)
    out = []
    t = np.arange(T) / 30.0
    for k, (m, person) in enumerate(zip(moves, who)):
        m.angles += rest_angles(T) + person.posture
        m.angles[:, [SPINE_LOW, SPINE_UP, NECK]] += rng.normal(0, 0.07, (3, 3))  # today's posture
        m.angles[:, SPINE_LOW, PITCH] += 0.05 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3))
        m.angles[:, NECK, YAW] += 0.12 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
        for j in (L_UPPER, R_UPPER, L_FORE, R_FORE):  # arms drift a little
            m.angles[:, j, PITCH] += rng.normal(0, 0.08) + 0.06 * np.sin(
                2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3)
            )
        m.shift[:, 0] += 0.03 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6.3))
        free = [(fn, limb) for fn, limbs in DISTRACTORS for limb in limbs if limb not in (uses if k == 0 else ())]
        if free and rng.random() < nuisance.distractor:  # default: a third of the clips
            fn, limb = free[int(rng.integers(len(free)))]
            fn(0.6 * _envelope(T, rng), rng, m, limb)
        out.append(m)
    return out


# ------------------------------------------------------------------------- the second family
# "field": other action programs (throwing, reaching, lunging, twisting, two-person greetings ...),
# noisier recordings (more distractors and glitches, more jitter, shorter and more varied clips, a
# narrower movement window, more slope or lean) and other subject counts (20 subjects, 1 repeat).
# It checks that a claim made on the default family is not a property of that family alone.


def _throw(u, amp, rng, m, style):
    wind = ramp(u, 0.05, 0.35) * (1.0 - ramp(u, 0.4, 0.5))
    release = ramp(u, 0.4, 0.55) * (1.0 - 0.7 * ramp(u, 0.7, 1.0))
    if style == 0:  # overarm
        m.angles[:, R_UPPER, PITCH] += -0.9 * wind + 2.4 * amp * release
        m.angles[:, R_FORE, PITCH] += 1.5 * wind + 0.2 * release
    else:  # underarm
        m.angles[:, R_UPPER, PITCH] += -0.8 * wind + 1.3 * amp * release
        m.angles[:, R_FORE, PITCH] += 0.3 * wind
    m.angles[:, SPINE_UP, YAW] += 0.5 * wind - 0.4 * release
    m.angles[:, L_THIGH, PITCH] += 0.4 * release


def _reach_up(u, amp, rng, m, style):
    e = ramp(u, 0.0, rng.uniform(0.3, 0.5)) * (1.0 - ramp(u, 0.75, 1.0))
    m.angles[:, L_UPPER, PITCH] += 2.9 * amp * e
    m.angles[:, L_UPPER, ROLL] -= (0.1 if style == 0 else 0.5) * e
    m.angles[:, SPINE_LOW, ROLL] -= 0.15 * e
    m.lift += 0.05 * e  # on tiptoes


def _lunge(u, amp, rng, m, style):
    e = ramp(u, 0.0, rng.uniform(0.3, 0.5)) * (1.0 - ramp(u, 0.65, 0.95))
    front, back = ((L_THIGH, L_SHANK), (R_THIGH, R_SHANK))[:: 1 if style == 0 else -1]
    m.angles[:, front[0], PITCH] += 1.2 * amp * e
    m.angles[:, front[1], PITCH] -= 1.2 * amp * e
    m.angles[:, back[0], PITCH] -= 0.5 * amp * e
    m.angles[:, back[1], PITCH] -= 0.6 * e
    m.shift[:, 2] -= 0.3 * amp * e
    m.angles[:, [L_UPPER, R_UPPER], ROLL] += np.array([-0.4, 0.4]) * e[:, None]


def _twist(u, amp, rng, m, style):
    e = _window(u)
    turn = _osc(u, rng, 1.0, 2.5)
    m.angles[:, SPINE_LOW, YAW] += 0.5 * amp * turn * e
    m.angles[:, SPINE_UP, YAW] += 0.4 * amp * turn * e
    if style == 0:  # arms out to the sides
        m.angles[:, L_UPPER, ROLL] -= 1.5 * e
        m.angles[:, R_UPPER, ROLL] += 1.5 * e
    else:  # hands together in front
        m.angles[:, [L_UPPER, R_UPPER], PITCH] += 1.3 * e[:, None]


def _toe_touch(u, amp, rng, m, style):
    e = ramp(u, 0.0, rng.uniform(0.5, 0.8))
    m.angles[:, SPINE_LOW, PITCH] -= 1.5 * amp * e
    m.angles[:, SPINE_UP, PITCH] -= 0.4 * e
    m.angles[:, [L_UPPER, R_UPPER], PITCH] += (1.5 if style == 0 else 0.8) * e[:, None]
    if style == 1:  # knees bent
        m.angles[:, [L_THIGH, R_THIGH], PITCH] += 0.5 * e[:, None]
        m.angles[:, [L_SHANK, R_SHANK], PITCH] -= 0.7 * e[:, None]


def _hop(u, amp, rng, m, style):
    e = _window(u)
    m.angles[:, L_THIGH, PITCH] += 0.9 * e  # the free leg held up
    m.angles[:, L_SHANK, PITCH] -= 1.6 * e
    bounce = np.clip(np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * u), 0.0, None) * e
    m.lift += 0.12 * amp * bounce
    m.angles[:, R_SHANK, PITCH] -= 0.4 * (1.0 - bounce) * e
    if style == 0:  # arms out for balance
        m.angles[:, L_UPPER, ROLL] -= 1.0 * e
        m.angles[:, R_UPPER, ROLL] += 1.0 * e


def _salute(u, amp, rng, m, style):
    e = ramp(u, 0.0, 0.3) * (1.0 - ramp(u, 0.7, 1.0))
    m.angles[:, R_UPPER, ROLL] += 1.4 * amp * e
    m.angles[:, R_UPPER, PITCH] += (0.3 if style == 0 else 0.8) * e
    m.angles[:, R_FORE, YAW] += 1.9 * e
    m.angles[:, NECK, PITCH] -= 0.15 * e


def _point(u, amp, rng, m, style):
    e = ramp(u, 0.0, 0.25) * (1.0 - ramp(u, 0.65, 0.95))
    m.angles[:, R_UPPER, PITCH] += 1.5 * amp * e
    m.angles[:, R_UPPER, YAW] += (0.4 if style == 0 else -0.3) * e
    m.angles[:, R_FORE, PITCH] -= 0.15 * e
    m.angles[:, NECK, YAW] += 0.3 * e


def _drink(u, amp, rng, m, style):
    sips = np.clip(np.sin(np.pi * rng.integers(1, 3) * np.clip(u, 0, 1)), 0.0, None)
    m.angles[:, R_UPPER, PITCH] += 0.8 * amp * sips
    m.angles[:, R_FORE, PITCH] += 2.1 * sips
    m.angles[:, NECK, PITCH] -= 0.35 * sips
    if style == 1:  # the other hand holds the glass too
        m.angles[:, L_UPPER, PITCH] += 0.7 * sips
        m.angles[:, L_FORE, PITCH] += 1.8 * sips


def _stretch_sideways(u, amp, rng, m, style):
    e = ramp(u, 0.0, rng.uniform(0.3, 0.5)) * (1.0 - ramp(u, 0.8, 1.0))
    m.angles[:, L_UPPER, ROLL] -= 1.6 * amp * e
    m.angles[:, R_UPPER, ROLL] += 1.6 * amp * e
    m.angles[:, SPINE_UP, PITCH] += (0.25 if style == 0 else -0.1) * e
    m.angles[:, NECK, PITCH] += 0.3 * e


def _stomp(u, amp, rng, m, style):
    e = _window(u)
    beat = np.clip(np.sin(2 * np.pi * rng.uniform(1.5, 3.0) * u), 0.0, None) ** 2 * e
    m.angles[:, R_THIGH, PITCH] += 1.0 * amp * beat
    m.angles[:, R_SHANK, PITCH] -= (0.9 if style == 0 else 0.3) * beat
    m.angles[:, [L_UPPER, R_UPPER], PITCH] += 0.3 * beat[:, None]


def _sit_down(u, amp, rng, m, style):
    e = ramp(u, 0.1, rng.uniform(0.55, 0.8))
    for thigh, shank in ((L_THIGH, L_SHANK), (R_THIGH, R_SHANK)):
        m.angles[:, thigh, PITCH] += 1.6 * amp * e
        m.angles[:, shank, PITCH] -= 1.6 * amp * e
    m.shift[:, 2] += 0.25 * e  # back onto a chair
    m.angles[:, SPINE_LOW, PITCH] -= 0.3 * e
    if style == 1:  # hands on the thighs
        m.angles[:, [L_UPPER, R_UPPER], PITCH] += 0.6 * e[:, None]
        m.angles[:, [L_FORE, R_FORE], PITCH] += 0.6 * e[:, None]


def _combo(u, amp, rng, m, style):
    e = _window(u)
    m.angles[:, [L_UPPER, R_UPPER], PITCH] += 0.6 * e[:, None]
    m.angles[:, [L_FORE, R_FORE], PITCH] += 1.8 * e[:, None]
    phase = 2 * np.pi * rng.uniform(2.0, 3.5) * u
    for upper, fore, k in ((L_UPPER, L_FORE, 0), (R_UPPER, R_FORE, 1)):
        jab = np.clip(np.sin(phase + np.pi * k), 0.0, None) ** 2 * e
        m.angles[:, upper, PITCH] += 0.9 * amp * jab
        m.angles[:, fore, PITCH] -= 1.6 * jab
    m.angles[:, SPINE_UP, YAW] += 0.3 * np.sin(phase) * e * (1 if style == 0 else 0.3)


def _high_five(u, amp, rng, pair, style):
    e = ramp(u, 0.1, 0.35) * (1.0 - ramp(u, 0.55, 0.8))
    for m in pair:
        m.angles[:, R_UPPER, PITCH] += (2.6 if style == 0 else 1.6) * amp * e
        m.angles[:, R_FORE, PITCH] += 0.3 * e
        m.shift[:, 2] -= 0.15 * e


def _hug(u, amp, rng, pair, style):
    close = ramp(u, 0.05, 0.35) * (1.0 - ramp(u, 0.7, 0.95))
    for k, m in enumerate(pair):
        m.shift[:, 2] -= (0.3 if k == 0 or style == 0 else 0.05) * close
        m.angles[:, [L_UPPER, R_UPPER], PITCH] += 1.3 * amp * close[:, None]
        m.angles[:, L_UPPER, YAW] -= 0.6 * close
        m.angles[:, R_UPPER, YAW] += 0.6 * close
        m.angles[:, [L_FORE, R_FORE], PITCH] += 0.9 * close[:, None]
        m.angles[:, SPINE_LOW, PITCH] -= 0.15 * close


RIGHT, LEFT = frozenset({"right_arm"}), frozenset({"left_arm"})
FIELD_ACTIONS: tuple[Action, ...] = (
    Action("throw", _throw, uses=RIGHT | {"torso", "legs"}),
    Action("reach up", _reach_up, uses=LEFT | {"torso"}),
    Action("lunge", _lunge, uses=ARMS | LEGS_TORSO),
    Action("twist torso", _twist, uses=ARMS | {"torso"}),
    Action("touch toes", _there_and_back(_toe_touch), uses=ARMS | LEGS_TORSO),
    Action("hop on one leg", _hop, uses=ARMS | LEGS_TORSO),
    Action("salute", _salute, uses=RIGHT | {"head"}),
    Action("point", _point, uses=RIGHT | {"head"}),
    Action("drink", _drink, uses=ARMS | {"head"}),
    Action("stretch arms sideways", _stretch_sideways, uses=ARMS | {"torso", "head"}),
    Action("stomp", _stomp, uses=ARMS | {"legs"}),
    Action("sit down", _sit_down, uses=ARMS | LEGS_TORSO),
    Action("stand up", _sit_down, reverse=True, uses=ARMS | LEGS_TORSO),
    Action("boxing combination", _combo, uses=ARMS | {"torso"}),
    Action("high five", _high_five, persons=2, uses=RIGHT),
    Action("hug", _hug, persons=2, uses=ARMS | {"torso"}),
)


@dataclass(frozen=True)
class Family:
    """A synthetic family: its action classes, nuisance, default subject and repeat counts, and a
    salt that keeps its random streams apart from the other families'."""

    actions: tuple
    nuisance: Nuisance
    subjects: int
    repeats: int
    salt: list = field(default_factory=list)


FAMILIES = {
    "default": Family(ACTIONS, DEFAULT_NUISANCE, subjects=12, repeats=2),
    "field": Family(
        FIELD_ACTIONS,
        Nuisance(
            distractor=0.5,
            other_side=0.35,
            span=(0.4, 0.8),
            amplitude=(0.65, 1.3),
            length_median=64.0,
            length_spread=0.5,
            noise=1.6,
            glitches=(0.45, 0.3),
            lean=0.3,
        ),
        subjects=20,
        repeats=1,
        salt=[7919],
    ),
}


def family_of(name: str) -> Family:
    if name not in FAMILIES:
        raise UserError(f"unknown synthetic family {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


# ----------------------------------------------------------------------------- people, cameras


def subject_ids(n: int) -> list[int]:
    """NTU60 training and test subjects, interleaved (1, 3, 2, 6, ...) so both xsub sides appear."""
    if not 1 <= n <= 40:
        raise UserError(
            f"--subjects {n}: expected 1 to 40 subjects (the NTU60 performer ids); choose a value in that range"
        )
    mixed = [p for pair in zip(NTU60_TRAIN_SUBJECTS, NTU60_TEST_SUBJECTS) for p in pair]
    return mixed[:n]


def body_lengths(seed: int, subject: int) -> np.ndarray:
    """Per-subject bone lengths: overall size, arm / leg / trunk proportions and a per-bone jitter,
    left and right alike."""
    rng = np.random.default_rng([seed, subject, 3])
    jitter = rng.uniform(0.9, 1.1, V)
    for left, right in MIRROR:
        jitter[right] = jitter[left]
    arms, legs, trunk = rng.uniform(0.88, 1.12, 3)
    jitter[[4, 5, 6, 7, 8, 9, 10, 11, 21, 22, 23, 24]] *= arms
    jitter[[12, 13, 14, 15, 16, 17, 18, 19]] *= legs
    jitter[[1, 20, 2, 3]] *= trunk
    return BASE_LENGTH * rng.uniform(0.84, 1.14) * jitter


@dataclass(frozen=True)
class Camera:
    yaw: float
    distance: float
    height: float
    tilt: float
    roll: float = 0.0

    def see(self, world: np.ndarray) -> np.ndarray:
        """World points (..., 3) (floor at y = 0, subject near the origin) -> Kinect camera space."""
        rot = _rot(2, np.float64(self.roll)) @ _rot(0, np.float64(self.tilt)) @ _rot(1, np.float64(self.yaw))
        return world @ rot.T + np.array([0.0, -self.height, self.distance])


def camera(seed: int, setup: int, camera_id: int, yaw_deg: float | None = None, session: int = 0) -> Camera:
    """Camera `camera_id` of `setup`: a fixed yaw per id (+- a few degrees), distance, height, and a
    residual tilt and roll of the sensor (up to about 30 and 10 degrees) that differ from one
    recording session (`session`, e.g. the subject) to the next, as the cameras are re-mounted."""
    rng = np.random.default_rng([seed, setup, 2])
    height = rng.uniform(0.75, 1.25)  # one height per setup, as in NTU
    rng = np.random.default_rng([seed, setup, camera_id, 2] + ([session] if session else []))
    yaw = np.deg2rad(CAMERA_YAW_DEG[camera_id] if yaw_deg is None else yaw_deg) + rng.normal(0, np.deg2rad(4))
    return Camera(
        yaw=float(yaw),
        distance=float(rng.uniform(2.5, 3.5)),
        height=float(height),
        tilt=float(rng.uniform(-0.5, 0.5)),
        roll=float(rng.normal(0.0, 0.3)),
    )


def draw_length(rng: np.random.Generator, longest: int = 300, nuisance: Nuisance = DEFAULT_NUISANCE) -> int:
    """Clip length in frames, the same distribution for every class: 40 to 300 (default: mostly 50 to 130)."""
    return int(np.clip(round(np.exp(rng.normal(np.log(nuisance.length_median), nuisance.length_spread))), 40, longest))


def place(
    motions: list[Motion], lengths: list[np.ndarray], facing: float, centre: np.ndarray, gap: float
) -> list[np.ndarray]:
    """Forward kinematics of each person, standing on the floor, in the world frame: (T, V, 3) each.

    One person faces the cameras (turned by `facing`); two persons face each other `gap` metres apart.
    """
    out = []
    n = len(motions)
    for k, (m, length) in enumerate(zip(motions, lengths)):
        base_yaw = facing + (0.0 if n == 1 else (-np.pi / 2 if k == 0 else np.pi / 2))
        offset = np.zeros(3) if n == 1 else _rot(1, np.float64(facing)) @ np.array([(k - 0.5) * gap, 0.0, 0.0])
        yaw = base_yaw + m.yaw
        rel = forward_kinematics(length, m.angles, yaw)
        root = np.einsum("tij,tj->ti", _rot(1, yaw), m.shift)  # body frame -> world
        root[:, 1] = -rel[:, FEET, 1].min(axis=1) + m.lift
        out.append(rel + (root + centre + offset)[:, None, :])
    return out


def sensor_noise(rng: np.random.Generator, shape: tuple, scale: float = 1.0) -> np.ndarray:
    """Kinect-like jitter: a few millimetres on the trunk, about a centimetre on hands and feet (x scale)."""
    sigma = np.full(V, 0.004 * scale)
    sigma[EXTREMITIES] = 0.012 * scale
    return rng.normal(0.0, 1.0, shape) * sigma[:, None]


# ------------------------------------------------------------------------------------ NTU clips


@dataclass
class Clip:
    """One sample as written: bodies (B, T, V, 3) in file order, which frames list them, their ids."""

    name: str
    joints: np.ndarray
    present: np.ndarray  # (B, T) bool
    body_ids: list[int]
    newline: str = "\n"
    label: int = 0

    def frames(self) -> list[list[tuple[int, np.ndarray]]]:
        """The `write_skeleton` layout: per frame, the listed `(body_id, joints (V, 3))`."""
        B, T = self.present.shape
        return [[(self.body_ids[b], self.joints[b, t]) for b in range(B) if self.present[b, t]] for t in range(T)]

    def bodies(self) -> np.ndarray:
        """(T, V, 3, 2) float32: the first two bodies listed in each frame, zeros when absent."""
        B, T = self.present.shape
        out = np.zeros((T, V, 3, 2), dtype=np.float32)
        slot = np.cumsum(self.present, axis=0) - 1
        for b in range(B):
            for t in np.flatnonzero(self.present[b] & (slot[b] < 2)):
                out[t, :, :, slot[b, t]] = self.joints[b, t]
        return out


@dataclass(frozen=True)
class SynthConfig:
    """What `hiclr-prep synth` writes; the defaults are the demo's dataset (1,296 NTU clips)."""

    seed: int = 0
    subjects: int = 12
    cameras: int = 3
    setups: int = 1
    classes: int = len(ACTIONS)
    repeats: int = 2
    anomalies: bool = False
    family: str = "default"

    @classmethod
    def of_family(cls, family: str, **changes) -> SynthConfig:
        """The family's own dataset (its subjects, repeats and classes), with `changes`."""
        fam = family_of(family)
        base = {"subjects": fam.subjects, "repeats": fam.repeats, "classes": len(fam.actions)}
        return cls(family=family, **{**base, **changes})

    def kind(self) -> Family:
        return family_of(self.family)

    def check(self) -> SynthConfig:
        subject_ids(self.subjects)
        n_actions = len(self.kind().actions)
        for key, value, lo, hi in (
            ("cameras", self.cameras, 1, 3),
            ("setups", self.setups, 1, 32),
            ("classes", self.classes, 1, n_actions),
            ("repeats", self.repeats, 1, 99),
        ):
            if not lo <= value <= hi:
                raise UserError(
                    f"--{key} {value}: expected a value from {lo} to {hi}"
                    f"{f' (family {self.family})' if self.family != 'default' else ''}; "
                    "choose one in that range"
                )
        return self


def ntu_name(setup: int, cam: int, subject: int, rep: int, action: int) -> str:
    return f"S{setup:03d}C{cam:03d}P{subject:03d}R{rep:03d}A{action:03d}"


@lru_cache(maxsize=4)
def performance(cfg: SynthConfig, setup: int, subject: int, rep: int, action: int) -> tuple[list[np.ndarray], int]:
    """World joints of one performance (seen by every camera of the setup) and its length."""
    fam = cfg.kind()
    rng = np.random.default_rng([cfg.seed, setup, subject, rep, action] + fam.salt)
    act = fam.actions[action - 1]
    T = draw_length(rng, nuisance=fam.nuisance)
    who = [performer(cfg.seed, subject)]
    if act.persons == 2:  # the partner: another person
        who.append(performer(cfg.seed, 1000 + subject * 7 + rep))
    motions = perform(act, T, rng, who, fam.nuisance)
    facing = (0.35 if rep % 2 == 0 else -0.35) * (rep > 1) + rng.normal(0.0, 0.2)
    centre = np.array([rng.uniform(-0.4, 0.4), 0.0, rng.uniform(-0.4, 0.4)])
    world = place(motions, [p.lengths for p in who], facing, centre, gap=rng.uniform(0.6, 1.5))
    return world, T


LIMBS = ([4, 5, 6, 7, 21, 22], [8, 9, 10, 11, 23, 24], [12, 13, 14, 15], [16, 17, 18, 19])


def tracking_glitches(rng: np.random.Generator, joints: np.ndarray, rates: tuple = (0.3, 0.2)) -> np.ndarray:
    """Kinect's tracking errors on (B, T, V, 3): a joint that jumps away for a few frames, a limb
    that freezes in place while the body moves on (`rates`: the chance of each, per body)."""
    joints = joints.copy()
    B, T = joints.shape[:2]
    for b in range(B):
        if rng.random() < rates[0]:
            j = int(rng.choice(EXTREMITIES))
            t0 = int(rng.integers(0, T))
            joints[b, t0 : t0 + int(rng.integers(2, 7)), j] += rng.normal(0.0, 0.15, 3)
        if rng.random() < rates[1]:
            limb = LIMBS[int(rng.integers(len(LIMBS)))]
            t0 = int(rng.integers(0, T))
            t1 = min(T, t0 + max(2, int(T * rng.uniform(0.1, 0.25))))
            body = joints[b]  # (T, V, 3) view
            body[t0:t1, limb] = body[t0:t1, :1] + (body[t0, limb] - body[t0, 0])
    return joints


def render_clip(cfg: SynthConfig, setup: int, cam: int, subject: int, rep: int, action: int) -> Clip:
    """One NTU sample: the performance seen by camera `cam`, with sensor noise (and anomalies if asked)."""
    world, _ = performance(cfg, setup, subject, rep, action)  # shared by the cameras
    fam = cfg.kind()
    rng = np.random.default_rng([cfg.seed, setup, subject, rep, action, cam, 1] + fam.salt)
    view = camera(cfg.seed, setup, cam, session=subject)
    view = replace(
        view, tilt=view.tilt + rng.normal(0.0, fam.nuisance.lean)
    )  # the performer stands on a slope, or leans
    joints = np.stack([view.see(w) for w in world])  # (B, T, V, 3)
    joints = tracking_glitches(rng, joints + sensor_noise(rng, joints.shape, fam.nuisance.noise), fam.nuisance.glitches)
    if len(joints) == 2 and rng.random() < 0.5:  # who is listed first: either person
        joints = joints[::-1]
    B, T = joints.shape[:2]
    present = np.ones((B, T), dtype=bool)
    ids = [int(BODY_ID_BASE + 3000 + rng.integers(0, 2**20)) + k for k in range(B)]
    name = ntu_name(setup, cam, subject, rep, action)
    newline = "\n"
    if cfg.anomalies:
        roll = rng.random(4)
        if roll[0] < 0.06:  # tracking lost: frames with 0 bodies
            head, tail = rng.integers(0, 4), rng.integers(1, 6)
            present[:, :head] = False
            present[:, T - tail :] = False
        if roll[1] < 0.06:  # a noise body listed after the real ones
            noise = _noise_body(rng, T)
            joints = np.concatenate([joints, noise[None]])
            on = np.zeros(T, dtype=bool)
            a = rng.integers(0, T // 2)
            on[a : a + rng.integers(5, T // 2 + 6)] = True
            present = np.concatenate([present, (on & present[0])[None]])
            ids.append(int(BODY_ID_BASE + 9000 + rng.integers(0, 2**20)))
        if roll[2] < 0.05:
            newline = "\r\n"  # files edited on Windows
        if name == MISSING_SAMPLE:
            present[:, : int(T * 0.7)] = False  # the official list: incomplete skeleton
    return Clip(
        name=name, joints=joints.astype(np.float32), present=present, body_ids=ids, newline=newline, label=action - 1
    )


def _noise_body(rng: np.random.Generator, T: int) -> np.ndarray:
    """Kinect's ghost detections: a jittering blob of joints somewhere in the room."""
    centre = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-0.5, 0.8), rng.uniform(2.5, 4.5)])
    return centre + rng.normal(0, 0.15, (T, V, 3)) + rng.normal(0, 0.05, (1, V, 3))


def iter_ntu_clips(cfg: SynthConfig) -> Iterator[Clip]:
    """Every sample of the grid setups x cameras x subjects x repeats x classes (plus the missing-list one)."""
    cfg.check()
    subjects = subject_ids(cfg.subjects)
    grid = [
        (s, c, p, r, a)
        for s in range(1, cfg.setups + 1)
        for p in subjects
        for r in range(1, cfg.repeats + 1)
        for a in range(1, cfg.classes + 1)
        for c in range(1, cfg.cameras + 1)
    ]
    if cfg.anomalies:
        missing = (1, 2, 5, 2, 8)
        if missing not in grid:
            grid.append(missing)
    for key in grid:
        yield render_clip(cfg, *key)


def write_ntu(out_dir: str | os.PathLike, cfg: SynthConfig, progress: bool = False) -> dict:
    """Write the NTU-format dataset (one `.skeleton` file per sample) to `out_dir`; return a summary."""
    out = _prepare_dir(out_dir)
    files = frames = bodies = 0
    clips = iter_ntu_clips(cfg)
    if progress:
        clips = _progress(clips, _ntu_total(cfg), "synth ntu")
    for clip in clips:
        _write_bytes(out / f"{clip.name}.skeleton", skeleton_text(clip))
        files += 1
        frames += clip.present.shape[1]
        bodies += int(clip.present.sum())
    write_class_names(out, cfg)
    return {
        "format": "ntu",
        "out": str(out),
        "files": files,
        "frames": frames,
        "body_records": bodies,
        "classes": cfg.classes,
        "subjects": subject_ids(cfg.subjects),
    }


def write_class_names(out: Path, cfg: SynthConfig) -> None:
    """`class_names.txt` beside the data: the synthetic actions' own names, which the preparers store."""
    from data_prep.classes import CLASS_NAMES_FILE

    _write_text(out / CLASS_NAMES_FILE, "".join(f"{a.name}\n" for a in cfg.kind().actions[: cfg.classes]))


def _ntu_total(cfg: SynthConfig) -> int:
    return cfg.setups * cfg.subjects * cfg.repeats * cfg.classes * cfg.cameras


def _progress(items, total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return items
    return tqdm(items, total=total, desc=desc, unit="file", leave=False, disable=None)  # off when not a tty


def _prepare_dir(out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder; choose a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {out}: cannot create the folder ({err.strerror}); choose a writable path") from None
    return out


# -------------------------------------------------------------------------------------- PKU-MMD


@dataclass
class Video:
    """One PKU-MMD video: (T, 150) rows (body 1 then body 2, 25 joints x 3), labelled segments."""

    name: str
    rows: np.ndarray
    segments: list[tuple[int, int, int, int]] = field(default_factory=list)  # label, start, end (1-based), confidence


def pku_video_names(cfg: SynthConfig) -> list[tuple[int, int, int]]:
    """(video number, subject, repeat) per recorded sequence; numbering as PKU-MMD I (0002, 0003 ...)."""
    out, number = [], 2
    for subject in range(1, cfg.subjects + 1):
        for rep in range(1, cfg.repeats + 1):
            out.append((number, subject, rep))
            number += 1
    return out


def pku_test_subject(subject: int) -> bool:
    """Synthetic PKU cross-subject protocol: every third subject is held out."""
    return subject % 3 == 0


@lru_cache(maxsize=2)
def pku_sequence(cfg: SynthConfig, subject: int, rep: int) -> tuple[list[np.ndarray], np.ndarray, list[tuple]]:
    """World joints of one continuous recording: every class once, in random order, idle gaps between.

    Returns world (2 persons, (T, V, 3) each), partner presence (T,), segments (label, start, end) 1-based.
    """
    rng = np.random.default_rng([cfg.seed, 77, subject, rep])
    order = rng.permutation(cfg.classes)
    lengths = [body_lengths(cfg.seed, 500 + subject), body_lengths(cfg.seed, 900 + subject)]
    facing = rng.normal(0.0, 0.15)
    gap = rng.uniform(0.85, 1.05)
    long_one = int(rng.integers(0, cfg.classes)) if cfg.anomalies else -1
    pieces_a, pieces_b, partner, segments = [], [], [], []
    t0 = 0
    prev_a: Motion | None = None
    prev_b: Motion | None = None
    for k, index in enumerate(order):
        act = ACTIONS[index]
        T = draw_length(rng) if k != long_one else int(rng.integers(320, 380))
        motions = perform(
            act, T, rng, [performer(cfg.seed, 500 + subject), performer(cfg.seed, 900 + subject)][: act.persons]
        )
        a = motions[0]
        b = motions[1] if act.persons == 2 else None
        idle = int(rng.integers(15, 45))
        # idle gap: interpolate from the last pose to the first pose of the next segment
        pieces_a.append(_blend(prev_a, a, idle))
        pieces_b.append(_blend(prev_b, b, idle))
        partner.append(np.zeros(idle, dtype=bool) if (prev_b is None or b is None) else np.ones(idle, dtype=bool))
        t0 += idle
        pieces_a.append(a)
        pieces_b.append(b if b is not None else Motion.still(T))
        partner.append(np.full(T, b is not None))
        segments.append((int(index) + 1, t0 + 1, t0 + T))
        t0 += T
        prev_a, prev_b = a, b
    tail = int(rng.integers(15, 45))
    pieces_a.append(_blend(prev_a, None, tail))
    pieces_b.append(_blend(prev_b, None, tail))
    partner.append(np.zeros(tail, dtype=bool))
    whole = [_concat(pieces_a), _concat(pieces_b)]
    present = np.concatenate(partner)
    # The actor faces the cameras when alone and turns to the partner in two-person segments.
    yaw_a = np.where(present, -np.pi / 2, 0.0)
    whole[0].yaw += _smooth(yaw_a, 9)
    world = []
    for k, (m, length) in enumerate(zip(whole, lengths)):
        base = facing + (0.0 if k == 0 else np.pi / 2)
        yaw = base + m.yaw
        rel = forward_kinematics(length, m.angles, yaw)
        root = np.einsum("tij,tj->ti", _rot(1, base + m.yaw), m.shift)
        root[:, 1] = -rel[:, FEET, 1].min(axis=1) + m.lift
        side = _rot(1, np.float64(facing)) @ np.array([(k - 0.5) * gap, 0.0, 0.0])
        world.append(rel + (root + _smooth(present.astype(float), 9)[:, None] * side)[:, None, :])
    return world, present, segments


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    kernel = np.ones(width) / width
    return np.convolve(np.pad(x, width // 2, mode="edge"), kernel, mode="valid")


def _blend(prev: Motion | None, nxt: Motion | None, n: int) -> Motion:
    """n frames moving from the end of `prev` to the start of `nxt` (the rest pose stands in for None)."""
    a = prev if prev is not None else Motion.still(1)
    b = nxt if nxt is not None else Motion.still(1)
    w = ramp(np.linspace(0, 1, n + 2)[1:-1], 0.0, 1.0)
    mix = lambda x, y: (
        x[-1][None] * (1 - w.reshape((-1,) + (1,) * (x.ndim - 1))) + y[0][None] * w.reshape((-1,) + (1,) * (y.ndim - 1))
    )
    return Motion(mix(a.angles, b.angles), mix(a.yaw, b.yaw), mix(a.shift, b.shift), mix(a.lift, b.lift))


def _concat(parts: list[Motion]) -> Motion:
    return Motion(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("angles", "yaw", "shift", "lift")))


def render_video(cfg: SynthConfig, number: int, subject: int, rep: int, view: str) -> Video:
    """One PKU-MMD file: the recording of `subject` seen from view L, M or R."""
    world, present, segments = pku_sequence(cfg, subject, rep)
    rng = np.random.default_rng([cfg.seed, 78, subject, rep, PKU_VIEWS[view]])
    cam = camera(cfg.seed, 100 + subject, PKU_VIEWS[view])
    joints = np.stack([cam.see(w) for w in world])  # (2, T, V, 3)
    joints += sensor_noise(rng, joints.shape)
    joints[1, ~present] = 0.0  # body 2 all zeros when absent
    rows = np.concatenate([joints[0].reshape(-1, V * 3), joints[1].reshape(-1, V * 3)], axis=1)
    confidence = rng.choice([1, 2], size=len(segments), p=[0.8, 0.2])
    return Video(
        name=f"{number:04d}-{view}",
        rows=rows.astype(np.float32),
        segments=[(lab, s, e, int(c)) for (lab, s, e), c in zip(segments, confidence)],
    )


def write_pkummd(out_dir: str | os.PathLike, cfg: SynthConfig, phase: int = 1, progress: bool = False) -> dict:
    """Write the PKU-MMD layout: `skeleton/NAME.txt`, `label/NAME.txt`, `split/<protocol files>`."""
    from data_prep.pkummd import PROTOCOL_FILES

    cfg.check()
    out = _prepare_dir(out_dir)
    for sub in ("skeleton", "label", "split"):
        (out / sub).mkdir(exist_ok=True)
    videos = pku_video_names(cfg)
    jobs = [(n, s, r, v) for n, s, r in videos for v in ("L", "M", "R")]
    items = _progress(jobs, len(jobs), "synth pkummd") if progress else jobs
    samples = 0
    names = []
    for number, subject, rep, view in items:
        video = render_video(cfg, number, subject, rep, view)
        _write_bytes(out / "skeleton" / f"{video.name}.txt", _format_rows(video.rows))
        segments = list(video.segments)
        if cfg.anomalies and number == videos[0][0] and view == "M":
            label, start, end, conf = segments[-1]  # a label running past the recording
            segments[-1] = (label, start, video.rows.shape[0] + 4, conf)
        if cfg.anomalies and number == videos[-1][0] and view == "R":
            names.append((video.name, subject))  # a recording nobody labelled
            continue
        _write_text(out / "label" / f"{video.name}.txt", "".join(f"{lab},{s},{e},{c}\n" for lab, s, e, c in segments))
        samples += len(segments)
        names.append((video.name, subject))
    train_sub = [n for n, s in names if not pku_test_subject(s)]
    test_sub = [n for n, s in names if pku_test_subject(s)]
    train_view = [n for n, _ in names if not n.endswith("-L")]
    test_view = [n for n, _ in names if n.endswith("-L")]
    files = PROTOCOL_FILES[phase]
    for protocol, (train, test) in (("xsub", (train_sub, test_sub)), ("xview", (train_view, test_view))):
        _write_text(
            out / "split" / files[protocol],
            f"Training videos: \n{', '.join(train)}\nValidataion videos: \n{', '.join(test)}\n",
        )
    write_class_names(out, cfg)
    return {
        "format": "pkummd",
        "phase": phase,
        "out": str(out),
        "videos": len(names),
        "samples": samples,
        "classes": cfg.classes,
        "subjects": cfg.subjects,
    }


def _format_rows(rows: np.ndarray) -> bytes:
    """(T, 150) -> text, one frame per line, up to 6 decimals (the layout of the PKU-MMD files)."""
    return format_table(rows, decimals=6)[0]


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("ascii"))


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data, durable=False)  # regenerable from the seed: no fsync


# ------------------------------------------------------------------------- fast text formatting

_DIGITS4 = np.frombuffer(b"".join(b"%04d" % i for i in range(10000)), dtype="<u4")  # "0000" .. "9999"


def _digit_rows(x: np.ndarray, count: int) -> list[np.ndarray]:
    """Non-negative int64 (n,) -> `count` rows (n,) of ASCII digits, most significant first."""
    words = []
    for _ in range(-(-count // 4)):
        x, low = np.divmod(x, 10000)
        words.insert(0, _DIGITS4[low])
    digits = [((w >> (8 * i)) & 0xFF).astype(np.uint8) for w in words for i in range(4)]
    return digits[len(digits) - count :]


def format_table(values: np.ndarray, decimals: int = 6, newline: str = "\n") -> tuple[bytes, np.ndarray]:
    """Rows of numbers -> text, single spaces, `newline` after each row, `%g`-like (no trailing zeros).

    Vectorised: digits come from integer arithmetic and 4-digit table look-ups over the whole
    table, one byte position at a time, so the cost is a few passes over contiguous arrays instead
    of a Python format call per number. Returns the bytes and the end offset of every row.
    """
    values = np.asarray(values, dtype=np.float64)
    rows, cols = values.shape
    flat = values.reshape(-1)
    scaled = np.rint(np.abs(flat) * float(10**decimals)).astype(np.int64)
    whole, frac = np.divmod(scaled, 10**decimals)
    zero = np.zeros(flat.size, dtype=np.uint8)
    layout = [np.where((flat < 0) & (scaled != 0), np.uint8(ord("-")), zero)]
    int_rows = _digit_rows(whole, max(1, len(str(int(whole.max(initial=0))))))
    started = np.zeros(flat.size, dtype=bool)
    for k, digit in enumerate(int_rows):  # drop leading zeros, keep the units
        started |= digit != ord("0")
        layout.append(digit if k == len(int_rows) - 1 else np.where(started, digit, zero))
    fraction = []
    significant = np.zeros(flat.size, dtype=bool)
    for digit in reversed(_digit_rows(frac, decimals) if decimals else []):  # drop trailing zeros
        significant |= digit != ord("0")
        fraction.insert(0, np.where(significant, digit, zero))
    if decimals:
        layout.append(np.where(significant, np.uint8(ord(".")), zero))
        layout.extend(fraction)
    last = (np.arange(flat.size) % cols) == cols - 1
    sep = newline.encode()
    layout.append(np.where(last, np.uint8(sep[0]), np.uint8(ord(" "))))
    if len(sep) == 2:
        layout.append(np.where(last, np.uint8(sep[1]), zero))
    table = np.stack(layout, axis=1)  # (n, bytes per number), 0 = dropped
    row_ends = np.cumsum(np.count_nonzero(table.reshape(rows, -1), axis=1))
    flat_bytes = table.reshape(-1)
    return flat_bytes[flat_bytes != 0].tobytes(), row_ends


def skeleton_text(clip: Clip) -> bytes:
    """The NTU `.skeleton` grammar for `clip` (same fields as `data_prep.ntu.write_skeleton`), fast.

    Joint lines are x y z, Kinect v2 depth and colour projections, an orientation quaternion and
    the tracking state 2; body lines carry the bodyID and the lean of the body.
    """
    nl = clip.newline.encode()
    B, T = clip.present.shape
    order_t, order_b = np.nonzero(clip.present.T)  # body records in file order
    xyz = clip.joints[order_b, order_t].astype(np.float64).reshape(-1, 3)  # (R*25, 3)
    depth = np.where(np.abs(xyz[:, 2]) > 1e-6, xyz[:, 2], 1e-6)
    fields = np.zeros((xyz.shape[0], 12))
    fields[:, :3] = xyz
    fields[:, 3] = 256.0 + 365.5 * xyz[:, 0] / depth
    fields[:, 4] = 212.0 - 365.5 * xyz[:, 1] / depth
    fields[:, 5] = 960.0 + 1060.0 * xyz[:, 0] / depth + 15.0
    fields[:, 6] = 540.0 - 1060.0 * xyz[:, 1] / depth + 25.0
    angle = np.tile(0.1 * np.arange(V), order_b.size)
    fields[:, 7], fields[:, 9] = np.cos(angle), np.sin(angle)
    fields[:, 11] = 2
    text, ends = format_table(fields, decimals=7, newline=clip.newline)
    lean = clip.joints[order_b, order_t, :, :2].mean(axis=1) * 0.05
    counts = clip.present.sum(axis=0)
    parts = [b"%d" % T + nl]
    record = 0
    for t in range(T):
        parts.append(b"%d" % counts[t] + nl)
        for _ in range(counts[t]):
            start = int(ends[record * V - 1]) if record else 0
            parts.append(
                b"%d 0 1 1 1 1 0 %.7g %.7g 2" % (clip.body_ids[order_b[record]], lean[record, 0], lean[record, 1])
                + nl
                + b"25"
                + nl
                + text[start : int(ends[record * V + V - 1])]
            )
            record += 1
    return b"".join(parts)
