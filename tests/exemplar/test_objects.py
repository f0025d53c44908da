"""Built-in objects: prompt matching, geometry bounds, asymmetry, SDF primitives."""

import math

import pytest
import torch

from dreamfusion.errors import UserError
from dreamfusion.exemplar import sdf as S
from dreamfusion.exemplar.objects import OBJECT_NAMES, OBJECTS, get_object, parse_prompt, split_view_suffix


@pytest.mark.parametrize("prompt, name, view", [
    ("a hamburger", "a hamburger", None),
    ("A Hamburger!", "a hamburger", None),
    ("hamburger", "a hamburger", None),
    ("an hamburger, front view", "a hamburger", "front"),
    ("a hamburger, side view", "a hamburger", "side"),
    ("a hamburger back view", "a hamburger", "back"),
    ("a DSLR photo of a burger, top view", "a hamburger", "overhead"),
    ("a snowman, bottom view", "a snowman", "bottom"),
    ("the Red-Cube", "a red cube", None),
    ("a blue torus, overhead view.", "a blue torus", "overhead"),
    ("a rubber duck", "a rubber duck", None),
    ("a teapot", "a teapot", None),
    ("", None, None),
    ("front view", None, "front"),
])
def test_prompt_matching(prompt, name, view):
    obj, got_view = parse_prompt(prompt)
    assert (obj.name if obj else None) == name
    assert got_view == view


def test_unknown_prompt_lists_known_prompts_in_one_line():
    with pytest.raises(UserError) as err:
        get_object("a cat")
    message = str(err.value)
    assert "\n" not in message and "'a cat'" in message
    for name in OBJECT_NAMES:
        assert f'"{name}"' in message
    with pytest.raises(UserError, match="more than one"):
        get_object("a hamburger and a snowman")
    with pytest.raises(UserError, match="known prompts"):
        get_object("")


def test_view_suffix_only_at_the_end():
    assert split_view_suffix("a side view mirror") == ("a side view mirror", None)
    assert split_view_suffix("a teapot , Front View") == ("a teapot", "front")


@pytest.mark.parametrize("name", [n for n in OBJECT_NAMES if OBJECTS[n].front_back_symmetric])
def test_symmetric_objects_geometry_is_front_back_symmetric(name):
    p = _grid(32)
    obj = OBJECTS[name]
    assert torch.equal(obj.sdf(p) < 0, obj.sdf(p * torch.tensor([1.0, 1.0, -1.0])) < 0)


def test_library_size_and_asymmetric_members():
    assert len(OBJECTS) >= 6
    asymmetric = [o for o in OBJECTS.values() if not o.front_back_symmetric]
    assert {"a snowman", "a rubber duck", "a teapot"} <= {o.name for o in asymmetric}


def _grid(n=48):
    axis = torch.linspace(-1, 1, n)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


@pytest.mark.parametrize("name", OBJECT_NAMES)
def test_objects_fit_well_inside_the_unit_sphere(name):
    p = _grid()
    inside = OBJECTS[name].sdf(p) < 0
    assert inside.sum() > 100  # a solid object
    assert p[inside].norm(dim=-1).max() < 0.9
    # Every point outside radius 0.95 is clearly outside the object.
    far = p.norm(dim=-1) > 0.95
    assert (OBJECTS[name].sdf(p[far]) > 0.05).all()
    colours = OBJECTS[name].albedo(p[inside][:500])
    assert colours.min() >= 0 and colours.max() <= 1


@pytest.mark.parametrize("name", [n for n in OBJECT_NAMES if not OBJECTS[n].front_back_symmetric])
def test_asymmetric_objects_differ_from_their_front_back_mirror(name):
    p = _grid(64)
    mirrored = p * torch.tensor([1.0, 1.0, -1.0])
    obj = OBJECTS[name]
    inside = obj.sdf(p) < 0
    differs = inside != (obj.sdf(mirrored) < 0)
    # Occupancy is not symmetric under z -> -z (the snowman only by its nose, eyes and buttons).
    assert differs.sum() > 0.003 * inside.sum()


def test_snowman_nose_and_duck_beak_point_to_plus_z():
    snowman, duck = OBJECTS["a snowman"], OBJECTS["a rubber duck"]
    front, back = torch.tensor([[0.0, 0.41, 0.33]]), torch.tensor([[0.0, 0.41, -0.33]])
    assert snowman.sdf(front) < 0 < snowman.sdf(back)
    orange = snowman.albedo(front)[0]
    assert orange[0] > 0.9 and orange[2] < 0.2
    assert duck.sdf(torch.tensor([[0.0, 0.19, 0.53]])) < 0 < duck.sdf(torch.tensor([[0.0, 0.19, -0.53]]))


def test_primitives_closed_forms():
    p = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    torch.testing.assert_close(S.round_box(p, (0, 0, 0), (0.5, 0.5, 0.5)), torch.tensor([0.5, -0.5, math.sqrt(0.5)]))
    torch.testing.assert_close(S.sphere(p, (0, 0, 0), 0.5), torch.tensor([0.5, -0.5, math.sqrt(2) - 0.5]))
    torch.testing.assert_close(S.torus_y(p, (0, 0, 0), 0.5, 0.1), torch.tensor([0.4, 0.4, math.sqrt(1.25) - 0.1]))
    torch.testing.assert_close(S.ellipsoid(torch.tensor([[2.0, 0, 0], [0, 0.5, 0]]), (0, 0, 0), (1, 0.5, 1)),
                               torch.tensor([1.0, 0.0]))
    # A round cone with equal radii is a capsule: distance to the segment minus the radius.
    q = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    a, b = torch.tensor([0.0, -0.3, 0.1]), torch.tensor([0.2, 0.4, 0.0])
    h = (((q - a) @ (b - a)) / (b - a).dot(b - a)).clamp(0, 1)
    capsule = (q - a - h[:, None] * (b - a)).norm(dim=-1) - 0.2
    torch.testing.assert_close(S.round_cone(q, a.tolist(), b.tolist(), 0.2, 0.2), capsule, atol=1e-5, rtol=0)
    # Tapered: exact at the two end spheres' far poles.
    cone = S.round_cone(torch.tensor([[0.0, -1.0, 0.0], [0.0, 2.0, 0.0]]), (0, 0, 0), (0, 1, 0), 0.3, 0.1)
    torch.testing.assert_close(cone, torch.tensor([0.7, 0.9]))
