"""The DMTet texture's start from a NeRF (dreamfusion.dmtet.texture_fit): surface sampling against
closed forms, and the colour network fitted to a known surface colour."""

import torch
import trimesh

from dreamfusion.dmtet.texture_fit import fit_surface_colour, sample_surface
from dreamfusion.fields import FieldConfig, NeRFField


def _box(extents):
    box = trimesh.creation.box(extents=extents)
    return (torch.tensor(box.vertices, dtype=torch.float32), torch.tensor(box.faces, dtype=torch.int64))


def test_surface_samples_lie_on_the_faces_by_area_with_outward_normals():
    vertices, faces = _box((2.0, 1.0, 1.0))  # faces: x 1×1 (area 1 each), y and z 2×1 (area 2 each)
    points, normals = sample_surface(vertices, faces, 60_000, seed=0)
    half = torch.tensor([1.0, 0.5, 0.5])
    # Every point on the face its normal names: that coordinate at ±half, the others within.
    axis = normals.abs().argmax(1)
    on_face = points.gather(1, axis[:, None])[:, 0] * normals.gather(1, axis[:, None])[:, 0]
    assert torch.allclose(on_face, half[axis], atol=1e-5)
    assert bool((points.abs() <= half + 1e-5).all())
    assert torch.allclose(normals.norm(dim=1), torch.ones(len(normals)), atol=1e-5)
    assert torch.allclose(normals.abs().amax(1), torch.ones(len(normals)), atol=1e-5)  # axis-aligned, outward
    # By area: the two x faces hold 2 of the total area 10.
    share = (axis == 0).float().mean().item()
    assert abs(share - 0.2) < 0.01
    # Uniform within a face: the mean of the +y face's points is its centre.
    top = points[(axis == 1) & (normals[:, 1] > 0)]
    assert torch.allclose(top.mean(0), torch.tensor([0.0, 0.5, 0.0]), atol=0.02)


def test_fit_moves_the_albedo_to_the_target_colour_on_the_surface_and_its_shell():
    torch.manual_seed(0)
    field = NeRFField(FieldConfig(backbone="grid", bound=1.0))
    vertices, faces = _box((1.0, 1.0, 1.0))

    def target(points, normals):  # a colour per face, constant along the normal
        return 0.5 + 0.4 * normals

    untouched = {k: v.clone() for k, v in field.state_dict().items()}
    none = fit_surface_colour(field, target, vertices, faces, steps=0, lr=1e-3, shell=0.02, seed=0)
    assert none.rmse_after == none.rmse_before
    assert all(torch.equal(v, field.state_dict()[k]) for k, v in untouched.items())

    fit = fit_surface_colour(field, target, vertices, faces, steps=300, lr=5e-3, shell=0.02, seed=0)
    assert fit.rmse_before > 0.2  # a fresh field's albedo is ~0.5 grey: face colours are 0.1-0.9
    assert fit.rmse_after < 0.25 * fit.rmse_before
    # Also off the surface, within the shell: the colour holds along the normal.
    points, normals = sample_surface(vertices, faces, 4096, seed=7)
    with torch.no_grad():
        inner = field.density(points - 0.015 * normals)["albedo"]
    assert (inner - target(points, normals)).pow(2).mean().sqrt() < 0.35 * fit.rmse_before
    # Seeded: the same fit again gives the same field.
    again = NeRFField(FieldConfig(backbone="grid", bound=1.0))
    again.load_state_dict(untouched)
    repeat = fit_surface_colour(again, target, vertices, faces, steps=300, lr=5e-3, shell=0.02, seed=0)
    assert repeat.rmse_after == fit.rmse_after
