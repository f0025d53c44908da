"""The DMTet stage's building blocks: the tetrahedral grid and marching tetrahedra."""

from dreamfusion.dmtet.marching_tets import MarchingTets, marching_tets
from dreamfusion.dmtet.tet_grid import kuhn_cells, kuhn_grid, tet_grid

__all__ = ["MarchingTets", "kuhn_cells", "kuhn_grid", "marching_tets", "tet_grid"]
