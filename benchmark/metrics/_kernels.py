"""Compiled loops behind :mod:`benchmark.metrics` (Numba, float64 unless stated).

Each kernel works row-parallel and writes one partial sum per output row; the
caller adds the rows in a fixed order, so results do not depend on the number
of threads. Inputs are C-contiguous float64 arrays of grey levels.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_JIT = {"cache": True, "nogil": True}
_HALF_PI = math.pi / 2


@numba.njit(parallel=True, **_JIT)
def gauss_down(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering with ``g``, keeping every second row and column from the first."""
    n = g.shape[0]
    h, w = img.shape
    ho, wo = (h - n) // 2 + 1, (w - n) // 2 + 1
    out = np.empty((ho, wo))
    for i in numba.prange(ho):
        col = np.zeros(w)
        for t in range(n):
            gt = g[t]
            row = img[2 * i + t]
            for c in range(w):
                col[c] += gt * row[c]
        for j in range(wo):
            acc = 0.0
            for t in range(n):
                acc += g[t] * col[2 * j + t]
            out[i, j] = acc
    return out


@numba.njit(parallel=True, **_JIT)
def vif_scale(refs: tuple, dist: np.ndarray, g: np.ndarray, sigma_n: float) -> tuple[np.ndarray, np.ndarray]:
    """One scale of pixel-domain VIF: per reference and output row, numerator and denominator sums.

    ``refs``: a tuple of (H, W) references; ``dist`` (H, W); Gaussian window
    ``outer(g, g)`` at 'valid' positions. Filters d, d*d and, per reference,
    r, r*r, r*d (products formed on the fly), then applies the reference's case analysis on ``s_r``,
    ``s_d``, ``g`` and ``sv``. The logarithms of up to 8 consecutive factors
    (each below 1e5) are taken as the log of their product, which changes the
    sum only at the level of float64 rounding.
    """
    k_refs = len(refs)
    h, w = dist.shape
    n = g.shape[0]
    n_q = 2 + 3 * k_refs
    ho, wo = h - n + 1, w - n + 1
    num = np.zeros((k_refs, ho))
    den = np.zeros((k_refs, ho))
    for i in numba.prange(ho):
        col = np.zeros((n_q, w))
        for t in range(n):
            gt = g[t]
            drow = dist[i + t]
            for c in range(w):
                d = drow[c]
                col[0, c] += gt * d
                col[1, c] += gt * (d * d)
            for k in range(k_refs):
                rrow = refs[k][i + t]
                q = 2 + 3 * k
                for c in range(w):
                    r = rrow[c]
                    col[q, c] += gt * r
                    col[q + 1, c] += gt * (r * r)
                    col[q + 2, c] += gt * (r * drow[c])
        loc = np.zeros((n_q, wo))
        for q in range(n_q):
            for t in range(n):
                gt = g[t]
                for j in range(wo):
                    loc[q, j] += gt * col[q, j + t]
        for k in range(k_refs):
            log_num = 0.0
            log_den = 0.0
            p_num = 1.0
            p_den = 1.0
            for j in range(wo):
                mu_d = loc[0, j]
                s_d = max(loc[1, j] - mu_d * mu_d, 0.0)
                mu_r = loc[2 + 3 * k, j]
                s_r = max(loc[3 + 3 * k, j] - mu_r * mu_r, 0.0)
                s_rd = loc[4 + 3 * k, j] - mu_r * mu_d
                gain = s_rd / (s_r + 1e-10)
                if s_r < 1e-10:
                    s_r = 0.0
                elif s_d >= 1e-10 and gain > 0:
                    sv = max(s_d - gain * s_rd, 1e-10)
                    p_num *= 1.0 + gain * gain * s_r / (sv + sigma_n)
                p_den *= 1.0 + s_r / sigma_n
                if (j & 7) == 7:
                    log_num += math.log10(p_num)
                    log_den += math.log10(p_den)
                    p_num = 1.0
                    p_den = 1.0
            num[k, i] = log_num + math.log10(p_num)
            den[k, i] = log_den + math.log10(p_den)
    return num, den


@numba.njit(inline="always", **_JIT)
def _sobel_row(x: np.ndarray, i: int, zeros: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> None:
    """Sobel responses of row ``i`` into ``sx``/``sy``, zero padding outside the image.

    The reference convolves with [[-1,0,1],[-2,0,2],[-1,0,1]] and
    [[1,2,1],[0,0,0],[-1,-2,-1]]; a convolution flips the kernel, so each is
    minus the correlation with it: Sx = left - right, Sy = lower - upper.
    """
    h, w = x.shape
    up = x[i - 1] if i > 0 else zeros
    mid = x[i]
    low = x[i + 1] if i + 1 < h else zeros
    for j in range(w):
        left = 0.0 if j == 0 else up[j - 1] + 2.0 * mid[j - 1] + low[j - 1]
        right = 0.0 if j == w - 1 else up[j + 1] + 2.0 * mid[j + 1] + low[j + 1]
        lower = (0.0 if j == 0 else low[j - 1]) + 2.0 * low[j] + (0.0 if j == w - 1 else low[j + 1])
        upper = (0.0 if j == 0 else up[j - 1]) + 2.0 * up[j] + (0.0 if j == w - 1 else up[j + 1])
        sx[j] = left - right
        sy[j] = lower - upper


# Rational approximation of atan on [0, 0.66] (Cephes' coefficients), with the usual
# reductions for larger arguments; within 1 ulp of libm's atan and about twice as fast.
_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)  # fmt: skip
_ATAN_Q = (2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)  # fmt: skip
_TAN_3PI_8 = 2.41421356237309504880


@numba.njit(inline="always", **_JIT)
def fast_atan(x: float) -> float:
    """``atan(x)`` to within about 2e-16."""
    sign = 1.0
    if x < 0.0:
        sign, x = -1.0, -x
    if x > _TAN_3PI_8:
        base, x = _HALF_PI, -1.0 / x
    elif x > 0.66:
        base, x = _HALF_PI / 2, (x - 1.0) / (x + 1.0)
    else:
        base = 0.0
    z = x * x
    p = (((_ATAN_P[0] * z + _ATAN_P[1]) * z + _ATAN_P[2]) * z + _ATAN_P[3]) * z + _ATAN_P[4]
    q = ((((z + _ATAN_Q[0]) * z + _ATAN_Q[1]) * z + _ATAN_Q[2]) * z + _ATAN_Q[3]) * z + _ATAN_Q[4]
    return sign * (base + (x + x * z * p / q))


@numba.njit(inline="always", **_JIT)
def _angle(sx: float, sy: float) -> float:
    """Edge angle ``arctan(Sy / Sx)``, ``pi/2`` where ``Sx == 0``."""
    return _HALF_PI if sx == 0.0 else fast_atan(sy / sx)


@numba.njit(parallel=True, **_JIT)
def qabf_rows(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row numerator and denominator of Qabf (true 2-D Sobel convolution, zero padding).

    A source pixel with zero edge strength adds nothing to either sum, so its
    angle and weights are not computed.
    """
    h, w = f.shape
    num = np.zeros(h)
    den = np.zeros(h)
    for i in numba.prange(h):
        zeros = np.zeros(w)
        sobel = np.empty((6, w))
        _sobel_row(f, i, zeros, sobel[0], sobel[1])
        _sobel_row(a, i, zeros, sobel[2], sobel[3])
        _sobel_row(b, i, zeros, sobel[4], sobel[5])
        acc_n = 0.0
        acc_d = 0.0
        for j in range(w):
            fx, fy = sobel[0, j], sobel[1, j]
            m2f = fx * fx + fy * fy
            gf = math.sqrt(m2f)
            af = 0.0
            have_af = False
            for src in range(2):
                sx, sy = sobel[2 + 2 * src, j], sobel[3 + 2 * src, j]
                m2x = sx * sx + sy * sy
                if m2x == 0.0:
                    continue
                gx = math.sqrt(m2x)
                if not have_af:
                    af = _angle(fx, fy)
                    have_af = True
                # gF/gX where gX > gF, gX/gF where gX < gF, and gF on a tie (the reference's quirk, not 1)
                big_g = gf if m2x == m2f else min(gx, gf) / max(gx, gf)
                align = 1.0 - abs(_angle(sx, sy) - af) / _HALF_PI
                q = (0.9994 / (1.0 + math.exp(-15.0 * (big_g - 0.5)))) * (
                    0.9879 / (1.0 + math.exp(-22.0 * (align - 0.8)))
                )
                acc_n += q * gx
                acc_d += gx
        num[i] = acc_n
        den[i] = acc_d
    return num, den


_BOX = 7
_BOX_CHUNK = 16  # output rows per task of the SSIM kernel


@numba.njit(inline="always", **_JIT)
def _ssim_row(x: np.ndarray, ys: tuple, q: int, i: int, out: np.ndarray) -> None:
    """Row ``i`` of SSIM quantity ``q`` (float32 products, stored as float64): x, x*x, then per y: y, y*y, x*y."""
    xr = x[i]
    if q < 2:
        for c in range(xr.shape[0]):
            v = np.float32(xr[c])
            out[c] = np.float64(v if q == 0 else v * v)
        return
    yr = ys[(q - 2) // 3][i]
    kind = (q - 2) % 3
    for c in range(xr.shape[0]):
        v, u = np.float32(yr[c]), np.float32(xr[c])
        out[c] = np.float64(v if kind == 0 else (v * v if kind == 1 else u * v))


@numba.njit(parallel=True, **_JIT)
def ssim_rows(x: np.ndarray, ys: tuple) -> np.ndarray:
    """Per reference and output row, sums of the old scikit-image float SSIM map of ``x`` against each of ``ys``.

    Reproduces the reference's float32 arithmetic: the images are float32; each
    7-wide box mean is, as in SciPy's ``uniform_filter`` on float32, a running
    sum in float64 divided by 7 and stored as float32, axis 0 first (column
    sums of integer-valued quantities are exact); the map formula (L = 2,
    sample covariance 49/48) runs in float32. 'valid' positions only.
    """
    k_n = len(ys)
    h, w = x.shape
    n_q = 2 + 3 * k_n
    ho, wo = h - _BOX + 1, w - _BOX + 1
    cov_norm = np.float32(49.0 / 48.0)
    c1 = np.float32((0.01 * 2.0) ** 2)
    c2 = np.float32((0.03 * 2.0) ** 2)
    two = np.float32(2.0)
    rows = np.zeros((k_n, ho))
    chunks = (ho + _BOX_CHUNK - 1) // _BOX_CHUNK
    for task in numba.prange(chunks):
        i0 = task * _BOX_CHUNK
        sums = np.zeros((n_q, w))
        new, old = np.empty(w), np.empty(w)
        for q in range(n_q):
            for t in range(_BOX):
                _ssim_row(x, ys, q, i0 + t, new)
                for c in range(w):
                    sums[q, c] += new[c]
        col = np.empty(w, dtype=np.float32)
        mean = np.empty((n_q, wo), dtype=np.float32)
        for i in range(i0, min(i0 + _BOX_CHUNK, ho)):
            for q in range(n_q):
                if i > i0:
                    _ssim_row(x, ys, q, i + _BOX - 1, new)
                    _ssim_row(x, ys, q, i - 1, old)
                    for c in range(w):
                        sums[q, c] += new[c] - old[c]
                for c in range(w):
                    col[c] = np.float32(sums[q, c] / _BOX)
                acc = 0.0
                for t in range(_BOX):
                    acc += np.float64(col[t])
                mean[q, 0] = np.float32(acc / _BOX)
                for j in range(1, wo):
                    acc += np.float64(col[j + _BOX - 1]) - np.float64(col[j - 1])
                    mean[q, j] = np.float32(acc / _BOX)
            for k in range(k_n):
                total = 0.0
                for j in range(wo):
                    ux, uy = mean[0, j], mean[2 + 3 * k, j]
                    vx = cov_norm * (mean[1, j] - ux * ux)
                    vy = cov_norm * (mean[3 + 3 * k, j] - uy * uy)
                    vxy = cov_norm * (mean[4 + 3 * k, j] - ux * uy)
                    s = ((two * ux * uy + c1) * (two * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
                    total += np.float64(s)
                rows[k, i] = total
    return rows


@numba.njit(parallel=True, **_JIT)
def neighbour_rows(f: np.ndarray) -> np.ndarray:
    """Per-row sums for SF and AG: [squared horizontal diffs, squared vertical diffs, AG terms]."""
    h, w = f.shape
    out = np.zeros((3, h))
    for i in numba.prange(h):
        rf = 0.0
        cf = 0.0
        ag = 0.0
        for j in range(w):
            if j + 1 < w:
                d = f[i, j + 1] - f[i, j]
                rf += d * d
            if i + 1 < h:
                d = f[i + 1, j] - f[i, j]
                cf += d * d
            gx = _np_gradient_at(f[i, max(j - 1, 0)], f[i, j], f[i, min(j + 1, w - 1)], j, w)
            gy = _np_gradient_at(f[max(i - 1, 0), j], f[i, j], f[min(i + 1, h - 1), j], i, h)
            ag += math.sqrt((gx * gx + gy * gy) / 2.0)
        out[0, i] = rf
        out[1, i] = cf
        out[2, i] = ag
    return out


@numba.njit(inline="always", **_JIT)
def _np_gradient_at(prev: float, here: float, nxt: float, pos: int, size: int) -> float:
    """``np.gradient`` at one position: central inside, one-sided at the ends, 0 for size 1."""
    if size == 1:
        return 0.0
    if pos == 0:
        return nxt - here
    if pos == size - 1:
        return here - prev
    return (nxt - prev) / 2.0


@numba.njit(parallel=True, **_JIT)
def centred_rows(f: np.ndarray, a: np.ndarray, b: np.ndarray, mf: float, ma: float, mb: float) -> np.ndarray:
    """Per-row centred sums for SD, CC, SCD and MSE.

    Rows of the result: ff, aa, bb, af, bf, (f-b)(f-b), (f-a)(f-a), a(f-b), b(f-a),
    (a-f)^2, (b-f)^2, all with the images (and differences) centred on their means.
    """
    h, w = f.shape
    out = np.zeros((11, h))
    for i in numba.prange(h):
        s = np.zeros(11)
        for j in range(w):
            fc, ac, bc = f[i, j] - mf, a[i, j] - ma, b[i, j] - mb
            d1 = (f[i, j] - b[i, j]) - (mf - mb)
            d2 = (f[i, j] - a[i, j]) - (mf - ma)
            s[0] += fc * fc
            s[1] += ac * ac
            s[2] += bc * bc
            s[3] += ac * fc
            s[4] += bc * fc
            s[5] += d1 * d1
            s[6] += d2 * d2
            s[7] += ac * d1
            s[8] += bc * d2
            ea, eb = a[i, j] - f[i, j], b[i, j] - f[i, j]
            s[9] += ea * ea
            s[10] += eb * eb
        out[:, i] = s
    return out


@numba.njit(**_JIT)
def histograms(f: np.ndarray, sources: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Grey-level histogram of ``f`` (256) and joint histograms (K, 256, 256) of ``f`` with each source.

    Levels are the values rounded half to even (``np.rint``); inputs lie in 0..255.
    """
    h, w = f.shape
    hist = np.zeros(256, dtype=np.int64)
    joint = np.zeros((len(sources), 256, 256), dtype=np.int64)
    for i in range(h):
        for j in range(w):
            lf = int(np.rint(f[i, j]))
            hist[lf] += 1
            for k in range(len(sources)):
                joint[k, lf, int(np.rint(sources[k][i, j]))] += 1
    return hist, joint


@numba.njit(parallel=True, **_JIT)
def ssim_maps(v: np.ndarray, i: np.ndarray, f: np.ndarray, g: np.ndarray, c1: float, c2: float) -> np.ndarray:
    """The Gaussian SSIM maps of ``v`` and ``i`` against ``f`` at 'valid' positions, window ``outer(g, g)``,
    variances as E[x^2] - mu^2 (the toolkit's ``filter2``): shape (2, H - n + 1, W - n + 1).

    The eight filtered moments of a row are formed in one pass; each is the zero-start sum of the taps in
    order, columns first, so every map value equals the one of filtering each moment image apart.
    """
    n = g.shape[0]
    h, w = f.shape
    ho, wo = h - n + 1, w - n + 1
    out = np.empty((2, ho, wo))
    for r in numba.prange(ho):
        col = np.zeros((8, w))  # f, f*f, then per source x, x*x, x*f
        for s in range(n):
            gs = g[s]
            fr, vr, ir = f[r + s], v[r + s], i[r + s]
            for c in range(w):
                y, a, b = fr[c], vr[c], ir[c]
                col[0, c] += gs * y
                col[1, c] += gs * (y * y)
                col[2, c] += gs * a
                col[3, c] += gs * (a * a)
                col[4, c] += gs * (a * y)
                col[5, c] += gs * b
                col[6, c] += gs * (b * b)
                col[7, c] += gs * (b * y)
        mom = np.zeros((8, wo))
        for t in range(n):
            gt = g[t]
            for q in range(8):
                for c in range(wo):
                    mom[q, c] += gt * col[q, c + t]
        for c in range(wo):
            my = mom[0, c]
            syy = mom[1, c] - my * my
            for k in range(2):
                mx = mom[2 + 3 * k, c]
                sxx = mom[3 + 3 * k, c] - mx * mx
                sxy = mom[4 + 3 * k, c] - mx * my
                out[k, r, c] = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return out


@numba.njit(inline="always", **_JIT)
def _symmetric_pass(src: np.ndarray, start: int, g: np.ndarray, out: np.ndarray) -> None:
    """``out[c] = sum_t g[t] src[start + c + t]`` for a symmetric ``g`` of odd length, the mirrored taps paired."""
    half = g.shape[0] // 2
    gc = g[half]
    for c in range(out.shape[0]):
        out[c] = gc * src[start + c + half]
    for t in range(half):
        gt = g[t]
        for c in range(out.shape[0]):
            out[c] += gt * (src[start + c + t] + src[start + c + 2 * half - t])


@numba.njit(parallel=True, error_model="numpy", **_JIT)
def qcb_rows(fv: np.ndarray, fi: np.ndarray, ff: np.ndarray, narrow: np.ndarray, wide: np.ndarray,
             scale_narrow: float, scale_wide: float) -> np.ndarray:  # fmt: skip
    """Row sums of Chen-Blum's quality map from the CSF-filtered visible, infrared and fused images and the two Gaussians' symmetric separable factors (before their ``2 pi s^2`` scales).

    Each Gaussian is a zero-padded 'same' correlation with ``outer(g, g)``, columns first; mirrored taps
    are added in pairs. IEEE arithmetic as the toolkit's: a zero contrast gives ``0 * inf``, NaN.
    """
    n = narrow.shape[0]
    half = n // 2
    h, w = ff.shape
    rows = np.empty(h)
    zero = np.zeros(w)
    for r in numba.prange(h):
        sm = np.empty((6, w))  # per image: narrow, wide
        for k in range(3):
            img = fv if k == 0 else (fi if k == 1 else ff)
            cn, cw = np.zeros(w + 2 * half), np.zeros(w + 2 * half)  # image column c at half + c
            mid, gn, gw = img[r], narrow[half], wide[half]
            for c in range(w):
                cn[half + c] = gn * mid[c]
                cw[half + c] = gw * mid[c]
            for s in range(half):
                above, below = r - half + s, r + half - s
                if above < 0 and below >= h:
                    continue
                ra = img[above] if above >= 0 else zero
                rb = img[below] if below < h else zero
                gn, gw = narrow[s], wide[s]
                for c in range(w):
                    pair = ra[c] + rb[c]
                    cn[half + c] += gn * pair
                    cw[half + c] += gw * pair
            _symmetric_pass(cn, 0, narrow, sm[2 * k])
            _symmetric_pass(cw, 0, wide, sm[2 * k + 1])
        acc = 0.0
        for c in range(w):
            dv = abs((sm[0, c] / scale_narrow) / (sm[1, c] / scale_wide) - 1.0)
            di = abs((sm[2, c] / scale_narrow) / (sm[3, c] / scale_wide) - 1.0)
            df = abs((sm[4, c] / scale_narrow) / (sm[5, c] / scale_wide) - 1.0)
            cv = dv * dv * dv / (dv * dv + 1e-4)
            ci = di * di * di / (di * di + 1e-4)
            cf = df * df * df / (df * df + 1e-4)
            mv = 1.0 if cv < cf else 0.0
            mi = 1.0 if ci < cf else 0.0
            qv = (cv / cf) * mv + (cf / cv) * (1.0 - mv)
            qi = (ci / cf) * mi + (cf / ci) * (1.0 - mi)
            both = cv * cv + ci * ci
            acc += (cv * cv / both) * qv + (ci * ci / both) * qi
        rows[r] = acc
    return rows


@numba.njit(inline="always", **_JIT)
def _sobel_pair(up: np.ndarray, mid: np.ndarray, low: np.ndarray, c: int, unit: float) -> tuple[float, float]:
    """``(gx, gy)`` at column ``c`` of a framed row triple (padded column c + 1): ``gx`` the correlation with
    [[-1,0,1],[-2,0,2],[-1,0,1]] times ``unit`` and ``gy`` with its transpose, the non-zero taps added from
    zero in row-major order (SciPy's ``ndimage.correlate`` order, so the values equal its)."""
    one, two = unit, 2.0 * unit
    gx = 0.0
    gx += up[c] * -one
    gx += up[c + 2] * one
    gx += mid[c] * -two
    gx += mid[c + 2] * two
    gx += low[c] * -one
    gx += low[c + 2] * one
    gy = 0.0
    gy += up[c] * -one
    gy += up[c + 1] * -two
    gy += up[c + 2] * -one
    gy += low[c] * one
    gy += low[c + 1] * two
    gy += low[c + 2] * one
    return gx, gy


@numba.njit(inline="always", **_JIT)
def _sobel_at(up: np.ndarray, mid: np.ndarray, low: np.ndarray, c: int) -> float:
    """``sqrt(gx^2 + gy^2)`` of :func:`_sobel_pair` with unit taps."""
    gx, gy = _sobel_pair(up, mid, low, c, 1.0)
    return math.sqrt(gx * gx + gy * gy)


@numba.njit(parallel=True, **_JIT)
def sobel_magnitude(padded: np.ndarray) -> np.ndarray:
    """The Sobel magnitude (see :func:`_sobel_at`) of the image inside a one-pixel frame (zeros or
    replicated borders)."""
    h, w = padded.shape[0] - 2, padded.shape[1] - 2
    out = np.empty((h, w))
    for r in numba.prange(h):
        for c in range(w):
            out[r, c] = _sobel_at(padded[r], padded[r + 1], padded[r + 2], c)
    return out


@numba.njit(parallel=True, **_JIT)
def qcv_blocks(padded: np.ndarray, error: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Chen-Varshney's block sums from the top-left, a partial last block summing the pixels it has: of the
    saliency ``|Sobel|^5`` of a source inside a one-pixel zero frame, and of the squared filtered error."""
    h, w = error.shape
    bm, bn = (h + block - 1) // block, (w + block - 1) // block
    saliency, squared = np.zeros((bm, bn)), np.zeros((bm, bn))
    for br in numba.prange(bm):
        for r in range(br * block, min(h, (br + 1) * block)):
            up, mid, low, e = padded[r], padded[r + 1], padded[r + 2], error[r]
            for bc in range(bn):
                s_acc, e_acc = 0.0, 0.0
                for c in range(bc * block, min(w, (bc + 1) * block)):
                    m = _sobel_at(up, mid, low, c)
                    m2 = m * m
                    s_acc += m2 * m2 * m
                    e_acc += e[c] * e[c]
                saliency[br, bc] += s_acc
                squared[br, bc] += e_acc
    return saliency, squared


@numba.njit(parallel=True, **_JIT)
def round_away(x: np.ndarray) -> np.ndarray:
    """``sign(x) * floor(|x| + 0.5)`` element-wise (MATLAB ``round``), NaN kept; a flat C-contiguous array."""
    out = np.empty(x.size)
    for k in numba.prange(x.size):
        v = x[k]
        sign = 1.0 if v > 0 else (-1.0 if v < 0 else (0.0 if v == 0 else v))  # NumPy's: sign(-0.0) is 0.0
        out[k] = sign * np.floor(np.abs(v) + 0.5)
    return out


_HIST_PARTS = 4  # joint histograms are counted in this many parts side by side, then added (exact integers)


@numba.njit(parallel=True, **_JIT)
def joint_histogram256(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Counts of the level pairs ``(a, b)``, both integral values in 0..255 of flat arrays: (256, 256)."""
    parts = np.zeros((_HIST_PARTS, 256, 256), dtype=np.int64)
    outside = np.zeros(_HIST_PARTS, dtype=np.int64)
    step = (a.size + _HIST_PARTS - 1) // _HIST_PARTS
    for p in numba.prange(_HIST_PARTS):
        for k in range(p * step, min(a.size, (p + 1) * step)):
            x, y = a[k], b[k]
            if 0 <= x <= 255 and 0 <= y <= 255:
                parts[p, int(x), int(y)] += 1
            else:
                outside[p] += 1
    if outside.sum() > 0:
        raise ValueError("joint_histogram256: a level outside 0..255")
    return parts.sum(axis=0)


@numba.njit(parallel=True, **_JIT)
def weighted_channels(rgb: np.ndarray, weights: tuple, rounded: bool) -> np.ndarray:
    """``w0 R + w1 G + w2 B`` of an (H, W, 3) float64 array, added left to right; with ``rounded``, MATLAB
    rounding (halves away from zero) and clipping to 0..255, as ``rgb2gray`` does for uint8 input."""
    h, w, _ = rgb.shape
    out = np.empty((h, w))
    for r in numba.prange(h):
        for c in range(w):
            g = weights[0] * rgb[r, c, 0] + weights[1] * rgb[r, c, 1] + weights[2] * rgb[r, c, 2]
            if rounded:
                g = min(max(np.sign(g) * np.floor(np.abs(g) + 0.5), 0.0), 255.0)
            out[r, c] = g
    return out


@numba.njit(**_JIT)
def histogram256(x: np.ndarray) -> np.ndarray:
    """Counts of the levels 0..255 of a flat array of integral values."""
    counts = np.zeros(256, dtype=np.int64)
    for k in range(x.size):
        v = x[k]
        if not 0 <= v <= 255:
            raise ValueError("histogram256: a level outside 0..255")
        counts[int(v)] += 1
    return counts


@numba.njit(parallel=True, error_model="numpy", **_JIT)
def stretch_round(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``round((x - lo) / (hi - lo) * 255)``, halves away from zero, of a flat array (IEEE: 0/0 is NaN)."""
    out = np.empty(x.size)
    span = hi - lo
    for k in numba.prange(x.size):
        v = (x[k] - lo) / span * 255
        sign = 1.0 if v > 0 else (-1.0 if v < 0 else (0.0 if v == 0 else v))
        out[k] = sign * np.floor(np.abs(v) + 0.5)
    return out


@numba.njit(parallel=True, **_JIT)
def mean_square_gradient(x: np.ndarray) -> np.ndarray:
    """``sqrt((gx^2 + gy^2) / 2)`` per pixel, ``gx``, ``gy`` as ``np.gradient`` (MATLAB ``gradient``) along
    columns and rows."""
    h, w = x.shape
    out = np.empty((h, w))
    for r in numba.prange(h):
        for c in range(w):
            here = x[r, c]
            gx = _np_gradient_at(x[r, c - 1] if c > 0 else here, here, x[r, c + 1] if c + 1 < w else here, c, w)
            gy = _np_gradient_at(x[r - 1, c] if r > 0 else here, here, x[r + 1, c] if r + 1 < h else here, r, h)
            out[r, c] = math.sqrt((gx * gx + gy * gy) / 2)
    return out


@numba.njit(inline="always", **_JIT)
def _nabf_angle(gv: float, gh: float) -> float:
    """``arctan(gv / gh)``, 0 where both are 0 and ``+-pi/2`` where only ``gh`` is."""
    if gh == 0.0:
        return 0.0 if gv == 0.0 else math.copysign(_HALF_PI, gv)
    return math.atan(gv / gh)


@numba.njit(inline="always", **_JIT)
def _nabf_loss(ratio: float, angle_x: float, angle_f: float) -> float:
    """``1 - sqrt(Qg * Qa)`` of Kumar's Nabf for one source at one pixel."""
    align = abs(abs(angle_x - angle_f) - _HALF_PI) * 2 / math.pi
    qg = 0.9999 / (1 + math.exp(-19 * (ratio - 0.5)))
    qa = 0.9995 / (1 + math.exp(-22 * (align - 0.5)))
    return 1 - math.sqrt(qg * qa)


@numba.njit(parallel=True, **_JIT)
def nabf_rows(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row numerator and denominator of Kumar's Nabf for fused ``f`` and sources ``a``, ``b``, each
    inside a one-pixel frame (mirrored borders).

    Only pixels where ``f`` is stronger than both sources add to the numerator, so angles and qualities
    are computed there alone; where ``gF > gX`` the strength ratio ``min/max`` is ``gX / gF``.
    """
    h, w = f.shape[0] - 2, f.shape[1] - 2
    num = np.zeros(h)
    den = np.zeros(h)
    for r in numba.prange(h):
        acc_n = 0.0
        acc_d = 0.0
        for c in range(w):
            fv, fh = _sobel_pair(f[r], f[r + 1], f[r + 2], c, 0.125)  # sobel_fn's (gv, gh): Sobel / 8
            av, ah = _sobel_pair(a[r], a[r + 1], a[r + 2], c, 0.125)
            bv, bh = _sobel_pair(b[r], b[r + 1], b[r + 2], c, 0.125)
            gf = math.sqrt(fh * fh + fv * fv)
            ga = math.sqrt(ah * ah + av * av)
            gb = math.sqrt(bh * bh + bv * bv)
            wa = ga**1.5 if ga >= 2 else 0.001
            wb = gb**1.5 if gb >= 2 else 0.001
            acc_d += wa + wb
            if gf > ga and gf > gb:
                af = _nabf_angle(fv, fh)
                acc_n += _nabf_loss(ga / gf, _nabf_angle(av, ah), af) * wa + _nabf_loss(gb / gf, _nabf_angle(bv, bh), af) * wb
        num[r] = acc_n
        den[r] = acc_d
    return num, den
