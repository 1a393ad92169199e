//! Tile geometry of the exact tiled evaluation (DESIGN.md, "Exact tiling").
//!
//! The image is cut into a grid of *owned* rectangles: together they cover every pixel once,
//! and since their edges lie on multiples of the pooling stride product, the owned rectangles
//! at every layer (the pixel rectangles divided by the layer's scale) partition that layer's
//! positions too. Each tile is evaluated on a *region*: its owned rectangle widened by a halo
//! at least the receptive-field radius of the deepest layer used, clamped to the image, with
//! both ends on the same alignment (or on the image's edge). Every owned position's value is
//! then the one the whole image gives it, and so is every value its gradient flows through.

use crate::error::{Error, Result};
use crate::vgg::block_of;

/// A half-open interval `start..end` of rows or columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// This pixel span at a layer of block `b` (scale 2^b), in the coordinates of a region
    /// that starts at pixel `origin` (aligned to 2^b).
    fn at_block(&self, b: usize, origin: usize) -> Span {
        Span {
            start: (self.start >> b) - (origin >> b),
            end: (self.end >> b) - (origin >> b),
        }
    }
}

/// One tile: the pixels it owns and the region it is evaluated on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub owned_y: Span,
    pub owned_x: Span,
    pub region_y: Span,
    pub region_x: Span,
}

/// Where a tile's owned positions lie at one layer: in the tile's own layer output (`local_*`)
/// and, from `global_y`/`global_x` on, in the whole image's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owned {
    pub local_y: Span,
    pub local_x: Span,
    pub global_y: usize,
    pub global_x: usize,
}

impl Owned {
    /// All positions of an `h x w` layer of an untiled evaluation.
    pub fn whole(h: usize, w: usize) -> Self {
        Owned {
            local_y: Span { start: 0, end: h },
            local_x: Span { start: 0, end: w },
            global_y: 0,
            global_x: 0,
        }
    }

    pub fn positions(&self) -> usize {
        self.local_y.len() * self.local_x.len()
    }

    /// The owned rows and columns in the whole image's layer output.
    pub fn global_spans(&self) -> (Span, Span) {
        let span = |start: usize, len: usize| Span {
            start,
            end: start + len,
        };
        (
            span(self.global_y, self.local_y.len()),
            span(self.global_x, self.local_x.len()),
        )
    }
}

impl Tile {
    /// Height and width of the region in pixels.
    pub fn region_dims(&self) -> (usize, usize) {
        (self.region_y.len(), self.region_x.len())
    }

    /// The owned positions at layer `layer` (0-based index in the layer table).
    pub fn owned_at(&self, layer: usize) -> Owned {
        let b = block_of(layer);
        Owned {
            local_y: self.owned_y.at_block(b, self.region_y.start),
            local_x: self.owned_x.at_block(b, self.region_x.start),
            global_y: self.owned_y.start >> b,
            global_x: self.owned_x.start >> b,
        }
    }
}

/// Receptive-field radius, in input pixels, of the outputs of the first `depth` layers: each
/// 3x3 convolution at block b reaches 2^b pixels further; an aligned pooling adds nothing.
pub fn receptive_radius(depth: usize) -> usize {
    (0..depth).map(|i| 1usize << block_of(i)).sum()
}

/// Product of the pooling strides before layer `depth - 1`: tile edges lie on its multiples.
pub fn alignment(depth: usize) -> usize {
    1 << block_of(depth.max(1) - 1)
}

/// The halo of a network of `depth` layers: the receptive radius rounded up to the alignment.
pub fn halo(depth: usize) -> usize {
    receptive_radius(depth).next_multiple_of(alignment(depth))
}

/// A grid of tiles over an `h x w` image for a network of `depth` layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileGrid {
    /// Owned side of a full tile, in pixels.
    pub side: usize,
    pub halo: usize,
    pub height: usize,
    pub width: usize,
    pub tiles: Vec<Tile>,
}

impl TileGrid {
    /// Tiles owning `side x side` pixels (fewer at the right and bottom edges).
    pub fn new(height: usize, width: usize, side: usize, depth: usize) -> Result<Self> {
        let align = alignment(depth);
        if side == 0 || !side.is_multiple_of(align) {
            return Err(Error::Config(format!(
                "tile side {side} must be a positive multiple of {align} (the pooling stride product)"
            )));
        }
        let halo = halo(depth);
        let spans = |len: usize| -> Vec<(Span, Span)> {
            (0..len.div_ceil(side))
                .map(|k| {
                    let owned = Span {
                        start: k * side,
                        end: ((k + 1) * side).min(len),
                    };
                    let region = Span {
                        start: owned.start.saturating_sub(halo),
                        end: (owned.end + halo).min(len),
                    };
                    (owned, region)
                })
                .collect()
        };
        let rows = spans(height);
        let cols = spans(width);
        let tiles = rows
            .iter()
            .flat_map(|&(owned_y, region_y)| {
                cols.iter().map(move |&(owned_x, region_x)| Tile {
                    owned_y,
                    owned_x,
                    region_y,
                    region_x,
                })
            })
            .collect();
        Ok(TileGrid {
            side,
            halo,
            height,
            width,
            tiles,
        })
    }

    /// Height and width of the largest region.
    pub fn max_region(&self) -> (usize, usize) {
        let h = self.tiles.iter().map(|t| t.region_y.len()).max();
        let w = self.tiles.iter().map(|t| t.region_x.len()).max();
        (h.unwrap_or(0), w.unwrap_or(0))
    }

    /// Pixels evaluated over all regions per pixel of the image (halo overhead; 1 untiled).
    pub fn overhead(&self) -> f64 {
        let region: usize = self
            .tiles
            .iter()
            .map(|t| t.region_y.len() * t.region_x.len())
            .sum();
        region as f64 / (self.height * self.width).max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_and_halo_follow_the_layer_table() {
        // conv1_1..conv5_1: 2 * 1 + 2 * 2 + 4 * 4 + 4 * 8 + 1 * 16.
        assert_eq!(receptive_radius(13), 70);
        assert_eq!(halo(13), 80);
        assert_eq!(alignment(13), 16);
        assert_eq!(receptive_radius(1), 1);
        assert_eq!((alignment(1), halo(1)), (1, 1));
        assert_eq!(receptive_radius(16), 118);
        assert_eq!(halo(16), 128);
    }

    #[test]
    fn owned_positions_partition_every_layer() {
        for depth in [1, 3, 5, 9, 13, 16] {
            let align = alignment(depth);
            for (h, w) in [(16, 16), (100, 37), (257, 513), (1000, 64)] {
                if h < align || w < align {
                    continue;
                }
                for side in [align, 2 * align, 48usize.next_multiple_of(align), 512] {
                    let grid = TileGrid::new(h, w, side, depth).unwrap();
                    for layer in 0..depth {
                        let b = block_of(layer);
                        let (lh, lw) = (h >> b, w >> b);
                        let mut seen = vec![0u8; lh * lw];
                        for t in &grid.tiles {
                            let o = t.owned_at(layer);
                            let (rh, rw) = t.region_dims();
                            // The region's layer output is what the network computes on it.
                            assert!(o.local_y.end <= rh >> b && o.local_x.end <= rw >> b);
                            assert_eq!(t.region_y.start % align, 0);
                            assert!(t.region_y.end == h || t.region_y.end.is_multiple_of(align));
                            for y in 0..o.local_y.len() {
                                for x in 0..o.local_x.len() {
                                    seen[(o.global_y + y) * lw + o.global_x + x] += 1;
                                }
                            }
                        }
                        assert!(
                            seen.iter().all(|&n| n == 1),
                            "{depth} {h}x{w} {side} {layer}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn regions_hold_the_receptive_field_of_owned_pixels() {
        let grid = TileGrid::new(300, 200, 32, 13).unwrap();
        for t in &grid.tiles {
            let r = receptive_radius(13);
            assert!(t.region_y.start == 0 || t.region_y.start + r <= t.owned_y.start);
            assert!(t.region_y.end == 300 || t.owned_y.end + r <= t.region_y.end);
        }
        assert_eq!(grid.tiles.len(), 10 * 7);
        assert!(TileGrid::new(100, 100, 24, 13).is_err());
        assert!(TileGrid::new(100, 100, 0, 13).is_err());
    }
}
