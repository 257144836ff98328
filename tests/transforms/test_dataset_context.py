"""transforms/dataset_context.py: MeanImageFn as a CombineFn, reference_key, AttachDatasetContext in a TestPipeline."""
import hashlib
import itertools

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that

from igaudit.transforms.dataset_context import AttachDatasetContext, MeanImageFn, reference_key
from igaudit.transforms.records import DecodedImage

SHAPE = (2, 3, 3)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [DecodedImage(uri=f"data/{i}.png", label="ant", image_id=f"img{i}",
                         pixels=rng.uniform(size=SHAPE).astype(np.float32)) for i in range(n)]


def _accumulate(fn, images):
    acc = fn.create_accumulator()
    for image in images:
        acc = fn.add_input(acc, image)
    return acc


def test_mean_image_known_answer():
    fn = MeanImageFn()
    constant = [DecodedImage("u", None, f"c{v}", np.full(SHAPE, v, np.float32)) for v in (0.0, 0.25, 1.0, 0.75)]
    mean = fn.extract_output(_accumulate(fn, constant))
    assert mean.dtype == np.float32 and mean.shape == SHAPE
    np.testing.assert_array_equal(mean, np.full(SHAPE, 0.5, np.float32))


def test_no_images_have_no_mean():
    fn = MeanImageFn()
    assert fn.create_accumulator() == (None, 0)
    assert fn.extract_output(fn.create_accumulator()) is None
    assert fn.extract_output(fn.merge_accumulators([fn.create_accumulator(), fn.create_accumulator()])) is None


def test_merge_order_and_empty_accumulators_do_not_matter():
    fn = MeanImageFn()
    images = _images(6)
    parts = [_accumulate(fn, images[:1]), _accumulate(fn, images[1:4]), fn.create_accumulator(),
             _accumulate(fn, images[4:])]
    expected = np.mean([im.pixels.astype(np.float64) for im in images], axis=0).astype(np.float32)
    for order in itertools.permutations(parts):
        merged = fn.merge_accumulators(list(order))
        assert merged[1] == 6
        np.testing.assert_allclose(fn.extract_output(merged), expected, rtol=1e-6)
    # merging in stages (as a runner's combiner lifting does) gives the same
    staged = fn.merge_accumulators([fn.merge_accumulators(parts[:2]), fn.merge_accumulators(parts[2:])])
    np.testing.assert_allclose(fn.extract_output(staged), expected, rtol=1e-6)


def test_add_and_merge_leave_their_inputs_alone():
    """An accumulator merged into another, and an added image, keep their values."""
    fn = MeanImageFn()
    images = _images(3, seed=1)
    pixels_before = images[0].pixels.copy()
    first = _accumulate(fn, images[:1])
    first_total = first[0].copy()
    fn.merge_accumulators([first, _accumulate(fn, images[1:])])
    np.testing.assert_array_equal(first[0], first_total)
    fn.add_input(first, images[2])
    np.testing.assert_array_equal(first[0], first_total)
    np.testing.assert_array_equal(images[0].pixels, pixels_before)


def test_reference_key_is_the_sha256_of_the_id():
    image = _images(1)[0]
    assert reference_key(image) == hashlib.sha256(b"img0").hexdigest()


def _check(expected_baseline, expected_references):
    """A matcher: every image carries these arrays (None: nothing) and its own pixels."""
    def match(actual):
        assert sorted(im.image_id for im in actual) == [f"img{i}" for i in range(5)]
        for im in actual:
            for got, want in ((im.baseline, expected_baseline), (im.references, expected_references)):
                if want is None:
                    assert got is None
                else:
                    np.testing.assert_allclose(got, want, rtol=1e-6)
    return match


def test_attach_dataset_context_in_a_pipeline():
    """The mean image, the reference sample (the ids with the smallest hashes, in hash order), both or none."""
    images = _images(5, seed=2)
    mean = np.mean([im.pixels for im in images], axis=0)
    by_hash = sorted(images, key=reference_key)
    two = np.stack([im.pixels for im in by_hash[:2]])
    every = np.stack([im.pixels for im in by_hash])
    with BeamTestPipeline() as p:
        decoded = p | beam.Create(images)
        assert_that(decoded | "Both" >> AttachDatasetContext(mean=True, references=2), _check(mean, two),
                    label="CheckBoth")
        assert_that(decoded | "Neither" >> AttachDatasetContext(mean=False), _check(None, None),
                    label="CheckNeither")
        assert_that(decoded | "MoreThanThere" >> AttachDatasetContext(mean=False, references=9),
                    _check(None, every), label="CheckAll")
