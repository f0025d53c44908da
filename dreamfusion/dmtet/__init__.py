"""The DMTet stage's building blocks: the tetrahedral grid and marching tetrahedra."""

from dreamfusion.dmtet.marching_tets import MarchingTets, marching_tets
from dreamfusion.dmtet.tet_grid import cubic_cells, kuhn_cells, kuhn_grid, tet_grid

__all__ = ["MarchingTets", "cubic_cells", "kuhn_cells", "kuhn_grid", "marching_tets", "tet_grid"]
