"""MediaPipe FaceMesh landmark indices and the face measures read from them: the one home of both.

FaceLandmarker gives 478 points (468 mesh points, then 10 refined iris points). Every module that picks
points by index (tracking, the expression model, the generator, the lip code, lip sync, metrics, the
Gaussian mouth) takes its indices from here, so no two of them can disagree on where the lips are.
Measures take landmarks [...,478,2+] (px; only x, y are used unless said) and return [...].
"""

from __future__ import annotations

import numpy as np

N_MESH = 468  # mesh points; the 10 after them (468..477) are the refined iris points

# landmarks that move with the skull, not with expression: forehead, nose bridge and tip, eye corners,
# temples, cheekbones, nose wings (brows, lids, lips and jaw are left out): head pose and face alignment
STABLE_IDX = np.array([10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 33, 133, 362, 263, 127, 356, 162, 389,
                       21, 251, 109, 338, 67, 297, 108, 337, 69, 299, 116, 345, 98, 327, 129, 358])
FACE_TOP, CHIN = 10, 152  # top of the mesh on the forehead, chin
NOSE_TIP = 1  # the generator counts landmarks above it as upper face
CHEEK_CONTOUR = (234, 454)  # face outline at ear height (subject's right, left)
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
                      377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
                      109])  # the face outline, a closed ring in order

# eyes
EYE_OUTER = (33, 263)  # outer eye corners (subject's right, left): the face's unit of length
EYE_CORNERS = np.array([(33, 133), (263, 362)])  # (outer, inner) corner of each eye (right, left)
# eyelid (upper, lower) pairs, right eye then left: their vertical gap is the eye opening
LID_PAIRS = np.array([(161, 163), (160, 144), (159, 145), (158, 153), (157, 154),
                      (388, 390), (387, 373), (386, 374), (385, 380), (384, 381)])
EYE_RINGS = (np.array([33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7]),
             np.array([263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249]))
# lower edge of each brow (right, left), outer to inner; and each eye's upper lid, corner to corner
BROW_LOWER = (np.array([46, 53, 52, 65, 55]), np.array([276, 283, 282, 295, 285]))
UPPER_LIDS = (np.array([33, 246, 161, 160, 159, 158, 157, 173, 133]),
              np.array([263, 466, 388, 387, 386, 385, 384, 398, 362]))

# mouth
LIP_MID = (13, 14)  # inner upper / lower lip, middle: their gap is the mouth opening
MOUTH_CORNERS = (61, 291)  # outer mouth corners (subject's right, left)
# inner-lip (upper, lower) pairs, corner to corner: their vertical gap is the mouth opening (speech)
INNER_LIP_PAIRS = np.array([(191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402),
                            (310, 318), (415, 324)])
INNER_LIP_RING = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87,
                           178, 88, 95])  # the inner-lip contour, a closed ring in order
OUTER_LIP_RING = np.array([61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37,
                           39, 40, 185])  # the outer lip contour, a closed ring in order (lower, then upper)
# outer and inner lip contours (the LMD metric's points)
MOUTH_LANDMARKS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
                   78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415)


def _dist(lmk: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    """2-D distance between two landmarks of lmk [...,478,2+] -> [...]."""
    return np.linalg.norm(lmk[..., pair[1], :2] - lmk[..., pair[0], :2], axis=-1)


def eye_distance(lmk: np.ndarray) -> np.ndarray:
    """Outer-eye-corner distance [...] (px): the scale that makes mouth measures size-free."""
    return _dist(lmk, EYE_OUTER)


def lip_gap_px(lmk: np.ndarray) -> np.ndarray:
    """Gap between the middle of the inner upper and lower lip [...] (px)."""
    return _dist(lmk, LIP_MID)


def mouth_width_px(lmk: np.ndarray) -> np.ndarray:
    """Distance between the outer mouth corners [...] (px)."""
    return _dist(lmk, MOUTH_CORNERS)


def mouth_opening(lmk: np.ndarray) -> np.ndarray:
    """Inner-lip gap over outer-eye distance [...]: the mouth opening of lip sync, the lip code and
    lip preservation (one measure, so they all agree)."""
    return lip_gap_px(lmk) / np.maximum(eye_distance(lmk), 1e-6)


def face_height_px(lmk: np.ndarray) -> np.ndarray:
    """Forehead-to-chin distance of the mesh [...] (px)."""
    return _dist(lmk, (FACE_TOP, CHIN))


def yaw_deg(lmk: np.ndarray) -> np.ndarray:
    """Head yaw [...] in degrees (0 = frontal) from the ear-height face outline of MediaPipe's 3-D
    landmarks [...,478,3] (px, z in x's scale)."""
    d = lmk[..., CHEEK_CONTOUR[1], :] - lmk[..., CHEEK_CONTOUR[0], :]
    return np.degrees(np.arctan2(d[..., 2], d[..., 0]))


def head_frame(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Head-aligned frame of a face [478,3] (px): rotation rows R [3,3], origin [3], unit length (px).

    x along the outer eye corners, y from forehead to chin (made orthogonal), z = x × y; origin at the
    rigid points' centroid; unit = outer-eye-corner distance. Maps p -> (p - origin) @ R.T / unit.
    """
    x = ref[EYE_OUTER[1]] - ref[EYE_OUTER[0]]
    unit = float(np.linalg.norm(x))
    x = x / unit
    down = ref[CHIN] - ref[FACE_TOP]
    y = down - x * (down @ x)
    y = y / np.linalg.norm(y)
    R = np.stack([x, y, np.cross(x, y)])
    return R, ref[STABLE_IDX].mean(0), unit
