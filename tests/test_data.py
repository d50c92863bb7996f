"""The training data pipeline: batch layout, darknet's augmentation geometry and colours,
label problems, mosaic, determinism across threads and request orders, multi-scale sizes."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from darknet_py.augment import Augmentation, Crop, augment_image, draw_crop, tile_for_quadrant
from darknet_py.crowdhuman import prepare, synthesize
from darknet_py.data import Batch, BatchLoader
from darknet_py.datafile import read_data_file, read_image_list
from darknet_py.errors import DataError, ShapeError, StateError

NET_W, NET_H = 96, 64
GREY, RED = (128, 128, 128), (0, 0, 255)  # BGR
FULL = Augmentation(jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5, flip=True, mosaic=True)


def write_image(path: Path, size: tuple[int, int], rects=(), background=GREY) -> Path:
    """A PNG of `size` (width, height) pixels filled with `background`, with (x0, y0, x1, y1,
    bgr) rectangles in pixels (x1, y1 exclusive)."""
    image = np.empty((size[1], size[0], 3), dtype=np.uint8)
    image[:] = background
    for x0, y0, x1, y1, colour in rects:
        image[y0:y1, x0:x1] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def write_labels(image: Path, rows) -> None:
    """YOLO label lines beside the image: (class, cx, cy, w, h) relative."""
    image.with_suffix(".txt").write_text("".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in rows))


def rect_label(cls: int, rect: tuple[int, int, int, int], size: tuple[int, int]) -> tuple:
    """The YOLO label of a pixel rectangle (x0, y0, x1, y1) in an image of `size` (width, height)."""
    x0, y0, x1, y1 = rect
    w, h = size
    return cls, (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h


def red_rectangle(tmp_path: Path, name: str = "red.png", size=(120, 80), rect=(30, 20, 60, 50)) -> Path:
    """An image with one red rectangle on grey and its label (class 0)."""
    path = write_image(tmp_path / name, size, [(*rect, RED)])
    write_labels(path, [rect_label(0, rect, size)])
    return path


def to_bgr(image: np.ndarray) -> np.ndarray:
    """A batch image (3, H, W) RGB in [0, 1] as uint8 HWC BGR."""
    return np.rint(image.transpose(1, 2, 0)[:, :, ::-1] * 255).astype(np.uint8)


def boxes_of(truths: np.ndarray) -> np.ndarray:
    """The used rows of one slot's truths."""
    return truths[truths[:, 2] > 0]


def pixel_box(box: np.ndarray, width: int, height: int, inset: int = 0) -> tuple[slice, slice]:
    """Rows and columns of a relative (cx, cy, w, h) box in an image, shrunk by `inset` pixels."""
    x0 = max(0, int(round((box[0] - box[2] / 2) * width)) + inset)
    x1 = int(round((box[0] + box[2] / 2) * width)) - inset
    y0 = max(0, int(round((box[1] - box[3] / 2) * height)) + inset)
    y1 = int(round((box[1] + box[3] / 2) * height)) - inset
    return slice(y0, y1), slice(x0, x1)


def is_red(image: np.ndarray) -> np.ndarray:
    """(H, W) mask of the red pixels of a batch image (3, H, W)."""
    return (image[0] > 0.8) & (image[1] < 0.2) & (image[2] < 0.2)


def loader(paths, augmentation=Augmentation.none(), **options) -> BatchLoader:
    settings = dict(classes=2, batch=8, width=NET_W, height=NET_H, workers=0)
    settings.update(options)
    return BatchLoader(paths, augmentation=augmentation, **settings)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[list[Path], int]:
    """Image paths and class count of a small dataset made by crowdhuman.synthesize + prepare."""
    root = tmp_path_factory.mktemp("synthetic")
    synthesize(root / "raw", train=24, val=2, seed=5, width_range=(96, 200))
    summary = prepare(root / "raw", root / "out", NET_W, NET_H)
    config = read_data_file(summary.data_file)
    return read_image_list(config.train), config.classes


# --------------------------------------------------------------------------- layout


def test_batch_layout(synthetic):
    paths, classes = synthetic
    with loader(paths, FULL, classes=classes, max_boxes=30, workers=2) as data:
        batch = data.get(0)
    assert isinstance(batch, Batch)
    assert batch.images.shape == (8, 3, NET_H, NET_W) and batch.images.dtype == np.float32
    assert batch.images.flags["C_CONTIGUOUS"]
    assert 0 <= batch.images.min() and batch.images.max() <= 1
    assert batch.truths.shape == (8, 30, 5) and batch.truths.dtype == np.float32
    assert len(batch.paths) == 8 and all(p in paths for p in batch.paths)
    assert (batch.truths[..., 2] > 0).sum() > 0
    for truths in batch.truths:
        used = truths[:, 2] > 0
        count = int(used.sum())
        assert used[:count].all() and not truths[count:].any(), "boxes first, then all-zero rows"
        x, y, w, h, cls = boxes_of(truths).T
        assert ((x - w / 2 >= -1e-6) & (x + w / 2 <= 1 + 1e-6)).all()
        assert ((y - h / 2 >= -1e-6) & (y + h / 2 <= 1 + 1e-6)).all()
        assert (w >= 1 / NET_W).all() and (h >= 1 / NET_H).all()
        assert np.array_equal(cls, np.round(cls)) and ((cls >= 0) & (cls < classes)).all()


def test_no_augmentation_maps_box_exactly(tmp_path):
    path = red_rectangle(tmp_path)
    with loader([path], batch=2) as data:
        batch = data.get(0)
    # 120x80 -> 96x64 is a stretch by .8: the rectangle x 30..60, y 20..50 lands on x 24..48, y 16..40.
    expected = np.array([[0.375, 0.4375, 0.25, 0.375, 0]], dtype=np.float32)
    source = cv2.imread(str(path))
    resized = cv2.resize(source, (NET_W, NET_H), interpolation=cv2.INTER_LINEAR)
    for image, truths in zip(batch.images, batch.truths):
        np.testing.assert_allclose(boxes_of(truths), expected, atol=1e-6)
        assert np.array_equal(image, resized[:, :, ::-1].transpose(2, 0, 1) / np.float32(255))
        red = is_red(image)
        rows, cols = pixel_box(expected[0], NET_W, NET_H, inset=1)
        assert red[rows, cols].all()
        rows, cols = pixel_box(expected[0], NET_W, NET_H, inset=-1)
        outside = red.copy()
        outside[rows, cols] = False
        assert not outside.any()
        assert np.allclose(image[:, 2, 2], np.array(GREY) / 255)


def test_flip_mirrors_boxes_and_pixels(tmp_path):
    path = red_rectangle(tmp_path)
    with loader([path], Augmentation.none()) as plain, loader([path], replace(Augmentation.none(), flip=True),
                                                             batch=16) as flipping:
        reference = plain.get(0)
        batch = flipping.get(0)
    xs = batch.truths[:, 0, 0]
    flipped = np.isclose(xs, 1 - 0.375)
    assert flipped.any() and (~flipped).any(), "p = .5: both cases occur in 16 slots"
    assert np.allclose(xs[~flipped], 0.375)
    for image, truths, is_flipped in zip(batch.images, batch.truths, flipped):
        expected = reference.images[0][:, :, ::-1] if is_flipped else reference.images[0]
        assert np.array_equal(image, expected)
        np.testing.assert_allclose(truths[0, 1:], reference.truths[0, 0, 1:], atol=1e-6)


@pytest.mark.parametrize("letter_box", [False, True])
def test_jitter_keeps_boxes_on_their_content(tmp_path, letter_box):
    rects = [(20, 30, 70, 90), (100, 10, 150, 40)]
    path = write_image(tmp_path / "two.png", (160, 100), [(*r, RED) for r in rects])
    write_labels(path, [rect_label(0, r, (160, 100)) for r in rects])
    augmentation = Augmentation(jitter=0.3, flip=True, letter_box=letter_box)
    shapes = set()
    with loader([path], augmentation, batch=16, workers=2) as data:
        for index in range(3):
            batch = data.get(index)
            for image, truths in zip(batch.images, batch.truths):
                red = is_red(image)
                covered = np.zeros_like(red)
                for box in boxes_of(truths):
                    rows, cols = pixel_box(box, NET_W, NET_H, inset=1)
                    if red[rows, cols].size:
                        assert red[rows, cols].mean() > 0.95
                    rows, cols = pixel_box(box, NET_W, NET_H, inset=-1)
                    covered[rows, cols] = True
                    shapes.add(tuple(np.round(box[2:4], 3)))
                assert not (red & ~covered).any(), "every red pixel lies in a truth box"
    assert len(shapes) > 4, "the crops differ from slot to slot"


def test_letter_box_keeps_the_aspect_ratio(tmp_path):
    size, rect = (160, 80), (60, 20, 100, 60)  # a 40x40 square in a 2:1 image
    path = write_image(tmp_path / "wide.png", size, [(*rect, RED)])
    write_labels(path, [rect_label(0, rect, size)])
    with loader([path], replace(Augmentation.none(), letter_box=True), batch=1, width=64, height=64) as data:
        batch = data.get(0)
    box = boxes_of(batch.truths[0])[0]
    # The crop grows to 160x160 (40 rows of padding above and below): the square stays square.
    np.testing.assert_allclose(box[:4], [0.5, 0.5, 0.25, 0.25], atol=1e-6)
    mean = np.rint(cv2.mean(cv2.imread(str(path)))[:3])[::-1] / 255  # darknet pads with the mean colour, RGB
    np.testing.assert_allclose(batch.images[0][:, :15, :].reshape(3, -1).T, np.tile(mean, (15 * 64, 1)), atol=1e-6)


def test_boxes_under_one_network_pixel_are_dropped(tmp_path):
    path = write_image(tmp_path / "small.png", (120, 80))
    # At 96x64 (scale .8): widths of 0.8 and 2.4 network pixels, heights of 8.
    write_labels(path, [(0, 0.3, 0.5, 1 / 120, 10 / 80), (1, 0.7, 0.5, 3 / 120, 10 / 80)])
    with loader([path], batch=1) as data:
        boxes = boxes_of(data.get(0).truths[0])
    assert boxes.shape == (1, 5) and boxes[0, 4] == 1


def test_max_boxes_keeps_a_random_subset(tmp_path):
    path = write_image(tmp_path / "many.png", (120, 80))
    write_labels(path, [(0, (i + 0.5) / 10, 0.5, 0.05, 0.2) for i in range(10)])
    with loader([path], batch=8, max_boxes=3) as data:
        truths = data.get(0).truths
    assert truths.shape == (8, 3, 5)
    assert (truths[:, :, 2] > 0).all()
    assert len({round(float(x), 4) for x in truths[:, :, 0].ravel()}) > 3, "darknet shuffles labels first"


def test_class_ids_out_of_range_are_skipped_with_one_warning(tmp_path):
    path = red_rectangle(tmp_path)
    write_labels(path, [rect_label(0, (30, 20, 60, 50), (120, 80)), (5, 0.5, 0.5, 0.2, 0.2), (7, 0.5, 0.5, 0.2, 0.2)])
    messages = []
    with loader([path], warn=messages.append, workers=2) as data:
        for index in range(3):
            truths = data.get(index).truths
            assert (truths[:, 0, 4] == 0).all() and not truths[:, 1:].any()
    assert len(messages) == 1
    assert str(path.with_suffix(".txt")) in messages[0] and "[5, 7]" in messages[0]


def test_missing_label_file_warns_and_gives_no_boxes(tmp_path):
    path = write_image(tmp_path / "unlabelled.png", (120, 80))
    messages = []
    with loader([path], warn=messages.append) as data:
        assert not data.get(0).truths.any()
        data.get(1)
    assert len(messages) == 1 and str(path.with_suffix(".txt")) in messages[0]


def test_default_warning_goes_to_warnings(tmp_path):
    path = write_image(tmp_path / "unlabelled.png", (120, 80))
    with pytest.warns(UserWarning, match="label file not found"), loader([path]) as data:
        data.get(0)


@pytest.mark.parametrize("workers", [0, 2])
def test_missing_or_unreadable_image_raises_naming_it(tmp_path, workers):
    missing = tmp_path / "gone.png"
    with loader([missing], workers=workers) as data, pytest.raises(DataError, match="gone.png"):
        data.get(0)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with loader([broken], workers=workers) as data, pytest.raises(DataError, match="broken.jpg"):
        data.get(0)


# --------------------------------------------------------------------------- colour


def test_hsv_distortion_matches_opencv_mat_arithmetic():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for dhue, dsat, dexp in [(0.1, 1.4, 0.7), (-0.3, 0.6, 1.5), (0.5, 1.0, 1.0)]:
        got = augment_image(image, Crop(0, 0, 0, 0, False, dhue, dsat, dexp), 50, 40)
        # darknet: hsv[0] += 179 * dhue; hsv[1] *= dsat; hsv[2] *= dexp on 8-bit Mats (RGB order there).
        h, s, v = cv2.split(cv2.cvtColor(image[:, :, ::-1], cv2.COLOR_RGB2HSV))
        h = cv2.add(h, float(np.float32(179) * np.float32(dhue)))
        s, v = cv2.convertScaleAbs(s, alpha=dsat), cv2.convertScaleAbs(v, alpha=dexp)
        expected = cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2RGB)[:, :, ::-1]
        assert np.array_equal(got, expected)


def test_random_crop_and_colour_ranges():
    aug = Augmentation(jitter=0.25, hue=0.1, saturation=1.5, exposure=2.0)
    rng = np.random.default_rng(0)
    crops = [draw_crop(rng, aug, 200, 100, 96, 96) for _ in range(500)]
    sides = np.array([(c.pleft, c.pright, c.ptop, c.pbot) for c in crops])
    assert (np.abs(sides[:, :2]) <= 50).all() and (np.abs(sides[:, 2:]) <= 25).all()
    assert sides[:, 0].min() < -40 and sides[:, 0].max() > 40
    dsat, dexp, dhue = (np.array([getattr(c, k) for c in crops]) for k in ("dsat", "dexp", "dhue"))
    assert ((dsat >= 1 / 1.5) & (dsat <= 1.5)).all() and (dsat < 1).mean() == pytest.approx(0.5, abs=0.1)
    assert ((dexp >= 0.5) & (dexp <= 2.0)).all()
    assert (np.abs(dhue) <= 0.1).all() and dhue.min() < -0.08 and dhue.max() > 0.08
    assert 0.4 < np.mean([c.flip for c in crops]) < 0.6


def test_colour_augmentation_changes_pixels_but_not_boxes(tmp_path):
    path = red_rectangle(tmp_path)
    colour = Augmentation(jitter=0, hue=0.2, saturation=1.5, exposure=1.5, flip=False)
    with loader([path], batch=1) as plain, loader([path], colour, batch=4) as coloured:
        reference = plain.get(0)
        batch = coloured.get(0)
    assert np.array_equal(batch.truths, np.repeat(reference.truths, 4, axis=0))
    assert all(not np.array_equal(image, reference.images[0]) for image in batch.images)


# --------------------------------------------------------------------------- mosaic


def quadrant_cut(boxes: np.ndarray) -> tuple[int, int] | None:
    """A cut point (network pixels, in [.2, .8] of the size) that no box straddles, with at
    most one box per quadrant; None when there is none."""
    x0, x1 = (boxes[:, 0] - boxes[:, 2] / 2) * NET_W, (boxes[:, 0] + boxes[:, 2] / 2) * NET_W
    y0, y1 = (boxes[:, 1] - boxes[:, 3] / 2) * NET_H, (boxes[:, 1] + boxes[:, 3] / 2) * NET_H
    eps = 1e-3
    for cut_x in range(int(0.2 * NET_W), int(0.8 * NET_W) + 1):
        if ((x0 < cut_x - eps) & (x1 > cut_x + eps)).any():
            continue
        for cut_y in range(int(0.2 * NET_H), int(0.8 * NET_H) + 1):
            if ((y0 < cut_y - eps) & (y1 > cut_y + eps)).any():
                continue
            quadrants = (x0 >= cut_x - eps).astype(int) + 2 * (y0 >= cut_y - eps)
            if len(set(quadrants)) == len(boxes):
                return cut_x, cut_y
    return None


def test_mosaic_tiles_four_images_with_boxes_cut_at_the_quadrants(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255)]  # BGR, one class each
    paths = []
    for cls, colour in enumerate(colours):
        path = write_image(tmp_path / f"c{cls}.png", (100 + 20 * cls, 80), background=colour)
        write_labels(path, [(cls, 0.5, 0.5, 1.0, 1.0)])  # one box: the whole image
        paths.append(path)
    augmentation = Augmentation(jitter=0.3, flip=True, mosaic=True)
    mosaics = 0
    with loader(paths, augmentation, classes=4, batch=16) as data:
        batch = data.get(0)
    for image, truths in zip(batch.images, batch.truths):
        boxes = boxes_of(truths)
        assert 1 <= len(boxes) <= 4
        if len(boxes) == 1:
            continue
        mosaics += 1
        assert quadrant_cut(boxes) is not None, "each box lies in its own quadrant"
        for box in boxes:
            rows, cols = pixel_box(box, NET_W, NET_H)
            colour = np.array(colours[int(box[4])][::-1], dtype=np.float32) / 255
            assert np.allclose(image[:, rows, cols].reshape(3, -1).T, colour), "a box shows its own image only"
    assert mosaics >= 3, "about half of the slots are mosaics"


def test_mosaic_tile_skips_the_padding_of_a_flipped_crop():
    image = np.zeros((64, 100, 3), dtype=np.uint8)
    image[:, :50] = RED
    image[:, 50:] = (255, 0, 0)
    # 20 columns of padding on the source's left; mirrored, they end up on the right, next to
    # the mosaic's centre for the top-left quadrant, which must show image content instead.
    crop = Crop(pleft=-20, pright=0, ptop=0, pbot=0, flip=True)
    pixels = augment_image(image, crop, 96, 64)
    tile = tile_for_quadrant(0, crop, 100, 64, 96, 64, cut_x=40, cut_y=32)
    assert (tile.x0, tile.x1, tile.y0, tile.y1) == (0, 40, 0, 32)
    assert tile.dx == 96 - 40 - 20 * 96 // 100  # darknet shifts by the padding in source-width units
    shown = pixels[tile.y0 + tile.dy:tile.y1 + tile.dy, tile.x0 + tile.dx:tile.x1 + tile.dx]
    padding = np.rint(np.array(cv2.mean(image)[:3]))
    assert not (np.abs(shown.astype(int) - padding).sum(axis=2) < 30).any()
    assert (np.abs(pixels[:, -5:].astype(int) - padding).sum(axis=2) < 30).all(), "the padding is there"


# --------------------------------------------------------------------------- determinism and sizes


def test_same_seed_and_index_give_the_same_batch_whatever_the_threads_and_order(synthetic):
    paths, classes = synthetic
    options = dict(classes=classes, max_boxes=40)
    with loader(paths, FULL, workers=0, **options) as plain:
        expected = {index: plain.get(index) for index in (1, 3, 4)}
    with loader(paths, FULL, workers=2, prefetch=3, **options) as threaded:
        got = {index: threaded.get(index) for index in (4, 0, 3, 2, 1)}
    for index, batch in expected.items():
        assert np.array_equal(got[index].images, batch.images)
        assert np.array_equal(got[index].truths, batch.truths)
        assert got[index].paths == batch.paths
    with loader(paths, FULL, seed=1, **options) as other:
        assert not np.array_equal(other.get(3).images, expected[3].images)
    assert not np.array_equal(expected[1].images, expected[3].images)


def test_multi_scale_sizes(synthetic):
    paths, classes = synthetic
    with loader(paths, FULL, classes=classes, workers=2) as data:
        big = data.get(5, width=128, height=96)
        normal = data.get(6)
        again = data.get(5, width=128, height=96)
    assert big.images.shape == (8, 3, 96, 128) and normal.images.shape == (8, 3, NET_H, NET_W)
    assert np.array_equal(big.images, again.images) and np.array_equal(big.truths, again.truths)
    assert big.paths == again.paths


# --------------------------------------------------------------------------- arguments and state


def test_bad_arguments_and_closed_loader(tmp_path):
    path = red_rectangle(tmp_path)
    with pytest.raises(ShapeError, match="jitter"):
        Augmentation(jitter=0.5)
    with pytest.raises(ShapeError, match="saturation"):
        Augmentation(saturation=0)
    with pytest.raises(DataError, match="empty"):
        loader([])
    with pytest.raises(ShapeError, match="batch"):
        loader([path], batch=0)
    data = loader([path], workers=2)
    with pytest.raises(ShapeError, match="index"):
        data.get(-1)
    with pytest.raises(ShapeError, match="width"):
        data.get(0, width=0)
    data.close()
    data.close()
    with pytest.raises(StateError):
        data.get(0)
