"""The 95% intervals every results table prints: Student's t, so three seeds are not
reported 2.2x too confidently."""

import numpy as np
import pytest

from wtl_tf.meta_test import mean_ci95, t_critical_95


def test_t_table_and_expansion_meet_and_tend_to_the_normal():
    assert t_critical_95(2) == pytest.approx(4.303, abs=1e-3)  # three seeds
    # the expansion used past the table agrees with the table's last entry
    z = 1.959963984540054
    expansion_at_30 = (z + (z ** 3 + z) / 120 + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * 900)
                       + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * 27000))
    assert expansion_at_30 == pytest.approx(t_critical_95(30), abs=5e-4)
    assert t_critical_95(31) < t_critical_95(30)
    assert t_critical_95(599) == pytest.approx(1.9639, abs=1e-4)  # 600 test episodes
    with pytest.raises(ValueError, match="at least 2"):
        t_critical_95(0)


@pytest.mark.parametrize("n", [3, 5, 40])
def test_interval_covers_the_true_mean_95_percent_of_the_time(n):
    rng = np.random.default_rng(n)
    samples = rng.normal(1.5, 2.0, size=(20000, n))
    mean, half = mean_ci95(samples, axis=1)
    coverage = np.mean(np.abs(mean - 1.5) <= half)
    # binomial sd at 20000 draws is 0.0015; the normal 1.96 covers 0.81 at n = 3
    assert 0.94 < coverage < 0.96, coverage


def test_scalar_and_axis_forms_agree_and_one_value_has_no_interval():
    values = np.array([[0.2, 0.4], [0.3, 0.7], [0.5, 0.9]])
    mean, half = mean_ci95(values, axis=0)
    for column in range(2):
        m, h = mean_ci95(values[:, column])
        assert (m, h) == pytest.approx((mean[column], half[column]))
    assert half[0] == pytest.approx(4.303 * np.std(values[:, 0], ddof=1) / np.sqrt(3), rel=1e-3)
    m, h = mean_ci95([0.7])
    assert m == 0.7 and np.isnan(h)
