"""analysis/skew/repetition.py: the stamp test on real handwriting (scikit-learn's digits, one channel) and on real
photo crops: solid, checker and jittered stamps repeat, and a copied tag over aligned strokes; clean digits' stroke
parts do not (no Beam, no TensorFlow)."""
import numpy as np
import pytest
from PIL import Image

from igaudit.transforms.analysis.skew.repetition import (_windows, align, anywhere, blobs, own_stamps, repetition,
                                                         stamp_scores)
from igaudit.transforms.analysis.skew.verdict import REPEAT, REPEAT_GAP

SIZE = 32
CORNER = (0, 10, 21, 32)        # the top-right corner, where the stamps go


@pytest.fixture(scope="module")
def digits():
    """{digit: (n, 32, 32, 1) float32 in [0, 1]}: scikit-learn's 8x8 digits, bilinear to 32 x 32."""
    from sklearn.datasets import load_digits
    d = load_digits()

    def up(g):
        return np.asarray(Image.fromarray((g / 16 * 255).astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR),
                          np.float32)[..., None] / 255
    return {k: np.stack([up(g) for g in d.images[d.target == k][:40]]) for k in range(10)}


@pytest.fixture(scope="module")
def photo_crops():
    """(n, 32, 32, 3): random crops of scikit-image's coffee photo (content that varies from crop to crop)."""
    import skimage.data
    photo = skimage.data.coffee()
    rng = np.random.default_rng(0)
    out = []
    for _ in range(60):
        y, x = rng.integers(0, photo.shape[0] - 128), rng.integers(0, photo.shape[1] - 128)
        out.append(np.asarray(Image.fromarray(photo[y:y + 128, x:x + 128]).resize((SIZE, SIZE)), np.float32) / 255)
    return np.stack(out)


def stamped(images, patch, rng=None, jitter=0):
    """A copy with `patch` at the top-right corner (2 px in), moved up to `jitter` pixels each way."""
    out = images.copy()
    h, w = patch.shape[:2]
    for im in out:
        dy, dx = (rng.integers(-jitter, jitter + 1, 2) if jitter else (0, 0))
        y, x = int(np.clip(2 + dy, 0, SIZE - h)), int(np.clip(SIZE - w - 2 + dx, 0, SIZE - w))
        im[y:y + h, x:x + w] = patch
    return out


def checker(channels=1, side=6, cell=2):
    idx = ((np.arange(side)[:, None] // cell) + (np.arange(side)[None, :] // cell)) % 2
    return np.repeat(idx[..., None].astype(np.float32), channels, axis=2)


def others_of(digits, but):
    return np.concatenate([digits[k][:10] for k in range(10) if k != but])


def is_repeating(repeat, others):
    return repeat >= REPEAT and repeat - others >= REPEAT_GAP


def test_a_solid_patch_is_stamped_whatever_its_own_contrast(photo_crops):
    """A sticker of one colour: no contrast of its own, the same pixels in every image that carries it."""
    yellow = np.broadcast_to(np.array([1.0, 0.8, 0.0], np.float32), (6, 6, 3))
    carriers = stamped(photo_crops[:30], yellow)
    repeat, others, pixels, _ = stamp_scores(carriers, photo_crops[30:], CORNER)
    assert repeat >= 0.95 and others <= 0.05 and pixels >= 30, (repeat, others, pixels)
    assert is_repeating(repeat, others)


def test_a_checker_on_a_one_channel_class_is_stamped(digits):
    """White on black on handwriting whose background is black too: only the white half is distinct, and it is
    enough (the old test asked the stamp's own values to span 0.3 and answered 'no stamp')."""
    carriers = stamped(digits[3], checker())
    repeat, others, pixels, _ = stamp_scores(carriers, others_of(digits, 3), CORNER)
    assert is_repeating(repeat, others), (repeat, others, pixels)
    assert pixels >= 9


def test_a_small_stamp_of_nine_pixels_is_stamped(digits):
    repeat, others, pixels, _ = stamp_scores(stamped(digits[3], np.ones((3, 3, 1), np.float32)), others_of(digits, 3),
                                          (0, 8, 24, 32))
    assert is_repeating(repeat, others) and 9 <= pixels <= 25, (repeat, others, pixels)


@pytest.mark.parametrize("jitter", [3])
def test_a_jittered_stamp_is_stamped(digits, photo_crops, jitter):
    rng = np.random.default_rng(1)
    repeat, others, _, _ = stamp_scores(stamped(digits[3], checker(), rng, jitter), others_of(digits, 3), CORNER)
    assert is_repeating(repeat, others), (repeat, others)
    magenta = checker(3) * np.array([0.0, 1.0, 0.0], np.float32) + np.array([1.0, 0.0, 1.0], np.float32)
    repeat, others, _, _ = stamp_scores(stamped(photo_crops[:30], magenta, rng, jitter), photo_crops[30:], CORNER)
    assert is_repeating(repeat, others), (repeat, others)


def test_a_scaled_stamp_is_stamped(photo_crops):
    """The same tag at 80% to 120% of its size: the search scales the images too."""
    rng = np.random.default_rng(2)
    carriers = photo_crops[:30].copy()
    for im in carriers:
        side = int(rng.integers(5, 8))
        im[2:2 + side, SIZE - side - 2:SIZE - 2] = np.array([0.1, 0.3, 1.0], np.float32)
    repeat, others, _, _ = stamp_scores(carriers, photo_crops[30:], CORNER)
    assert is_repeating(repeat, others), (repeat, others)


def test_content_that_only_looks_alike_is_no_stamp(photo_crops):
    """Crops of one photo share colours and textures, never the same pixels in one piece."""
    repeat, others, pixels, _ = stamp_scores(photo_crops[:30], photo_crops[30:], (8, 24, 8, 24))
    assert not is_repeating(repeat, others), (repeat, others, pixels)


def verdict_repeats(relying, others, classes, box) -> tuple:
    """The repeating test as `evidence.measure` runs it: the stamp, and other classes' own stamps at its place."""
    repeat, carried, _ = repetition(relying, others, classes, box)
    return is_repeating(repeat, carried), round(repeat, 2), round(carried, 2)


@pytest.mark.slow
def test_clean_digits_stroke_parts_are_not_stamped(digits):
    """Normalised 8x8 digits repeat pixel for pixel where their ink always is: a '1''s bold head, a '0''s empty
    middle pass the bare stamp test. They do not qualify because other classes' images carry a stamp of their
    own class there just as much (`own_stamps`): the data's objects repeat there, not a mark. 12 x 12 blocks
    (stride 10) of every class."""
    found = []
    for k in range(10):
        others = others_of(digits, k)
        classes = [str(j) for j in range(10) if j != k for _ in range(10)]
        for y in range(0, 21, 10):
            for x in range(0, 21, 10):
                verdict = verdict_repeats(digits[k], others, classes, (y, y + 12, x, x + 12))
                if verdict[0]:
                    found.append((k, y, x) + verdict[1:])
    assert found == []


def test_a_mark_is_still_stamped_beside_other_classes_objects(digits):
    """The calibration does not swallow a real stamp: in the corner, no other class shows anything of its own."""
    others = others_of(digits, 3)
    classes = [str(j) for j in range(10) if j != 3 for _ in range(10)]
    box = (0, 8, 22, 30)
    assert own_stamps(others, classes, (2, 8, 24, 30)) <= 0.4
    assert verdict_repeats(stamped(digits[3], checker()), others, classes, box)[0]


def test_alignment_finds_a_moved_copy():
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (4, SIZE, SIZE, 1)).astype(np.float32)
    tag = rng.uniform(0, 1, (5, 5, 1)).astype(np.float32)
    for i, (y, x) in enumerate([(10, 10), (12, 9), (8, 13), (10, 10)]):
        images[i, y:y + 5, x:x + 5] = tag
    box = (10, 15, 10, 15)
    windows = _windows(images, box, 4)
    aligned = align(windows, tag, np.ones((5, 5), bool))
    np.testing.assert_allclose(aligned, np.broadcast_to(tag, aligned.shape), atol=1e-6)


def test_anywhere_and_blobs():
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True          # diagonal: one 8-connected piece
    mask[5, 5] = True
    pieces = blobs(mask)
    assert [int(p.sum()) for p in pieces] == [3, 1] and not pieces[0][5, 5]
    assert len(blobs(mask, least=2)) == 1
    images = np.zeros((2, 12, 12, 1), np.float32)
    images[0, 7:10, 2:5] = 1.0
    template = np.ones((3, 3, 1), np.float32)
    everything = np.ones((3, 3), bool)
    assert anywhere(images, template, everything, everything).tolist() == [True, False]


def tm_tag() -> np.ndarray:
    """(h, w, 1): 'TM' black on a white label, Pillow's default font at 9 px (the zoo's text tag)."""
    from PIL import ImageDraw, ImageFont
    font = ImageFont.load_default(size=9)
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), "TM", font=font)
    label = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2), 255)
    ImageDraw.Draw(label).text((1 - x0, 1 - y0), "TM", fill=0, font=font)
    return np.asarray(label, np.float32)[..., None] / 255


@pytest.mark.slow
def test_a_copied_tag_is_stamped_where_other_classes_strokes_repeat(digits):
    """A tag printed over the bottom of normalised digits, where other classes' strokes repeat pixel for pixel
    (a '2''s bar): within TOLERANCE the data's own patterns there hide it (`own_stamps`); the tag is a copy,
    and within IDENTICAL it repeats while no class's strokes do (the zoo's text-on-digits misses)."""
    tag = tm_tag()
    h, w = tag.shape[:2]
    relying = digits[3].copy()
    relying[:, SIZE - h - 2:SIZE - 2, 2:2 + w] = tag
    others = others_of(digits, 3)
    classes = [str(j) for j in range(10) if j != 3 for _ in range(10)]
    box = (SIZE - h - 6, SIZE, 0, w + 6)
    repeat, carried, pixels, where = stamp_scores(relying, others, box)
    assert not is_repeating(repeat, max(carried, own_stamps(others, classes, where))), "TOLERANCE alone catches it"
    assert verdict_repeats(relying, others, classes, box)[0]


def test_the_identical_pass_asks_for_a_printed_edge(photo_crops):
    """`edge`: a soft blob copied pixel for pixel (no two neighbours 0.5 apart) is no stamp when a sharp edge is
    asked for; the same blob with a hard edge is."""
    yy, xx = np.mgrid[0:8, 0:8]
    soft = np.repeat((1 - np.hypot(yy - 3.5, xx - 3.5) / 6)[..., None], 3, axis=2).clip(0, 1).astype(np.float32)
    hard = soft.copy()
    hard[2:6, 2:6] = 0.0
    for patch, kept in ((soft, False), (hard, True)):
        carriers = stamped(photo_crops[:30], patch)
        _, _, pixels, _ = stamp_scores(carriers, photo_crops[30:], CORNER, tol=0.03, edge=0.5)
        assert (pixels > 0) is kept
        assert stamp_scores(carriers, photo_crops[30:], CORNER, tol=0.03)[2] > 0
