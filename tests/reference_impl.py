"""The reference's algorithms re-implemented naively (Python loops, full sorts), as test oracles.

They follow SPEC section 6 step by step, the way the MLCommons reference computes them, so the
vectorised library code can be checked against them on small cases. Benchmarks time them too.
"""
from __future__ import annotations

import itertools
from math import sqrt

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, box_iou


def reference_default_boxes(image_size, feat_size, steps, scales, aspect_ratios) -> torch.Tensor:
    """Default boxes built one by one in Python, cx/cy/w/h, clamped to [0, 1]."""
    height, width = image_size
    boxes = []
    for idx, (rows, cols) in enumerate(feat_size):
        sk1, sk2 = scales[idx], scales[idx + 1]
        sk3 = sqrt(sk1 * sk2)
        sizes = [(sk1 / width, sk1 / height), (sk3 / width, sk3 / height)]
        for alpha in aspect_ratios[idx]:
            sizes.append((sk1 * sqrt(alpha) / width, sk1 / (sqrt(alpha) * height)))
        for w, h in sizes:
            for i, j in itertools.product(range(rows), range(cols)):
                boxes.append(((j + 0.5) * steps[idx] / width, (i + 0.5) * steps[idx] / height, w, h))
    return torch.tensor(boxes, dtype=torch.float).clamp_(0, 1)


def reference_encode(anchors_cxcywh, boxes_xyxy, labels, criteria=0.5):
    """Matching as the reference's Encoder.encode: returns matched boxes (cxcywh) and labels per anchor."""
    anchors_xyxy = box_convert(anchors_cxcywh, "cxcywh", "xyxy")
    ious = box_iou(boxes_xyxy, anchors_xyxy)
    best_dbox_ious, best_dbox_idx = ious.max(dim=0)
    _, best_bbox_idx = ious.max(dim=1)
    best_dbox_ious.index_fill_(0, best_bbox_idx, 2.0)
    for gt_index in range(best_bbox_idx.size(0)):  # sequential: the later box wins a shared anchor
        best_dbox_idx[best_bbox_idx[gt_index]] = gt_index
    masks = best_dbox_ious > criteria
    labels_out = torch.zeros(anchors_xyxy.size(0), dtype=torch.long)
    labels_out[masks] = labels[best_dbox_idx[masks]]
    boxes_out = anchors_xyxy.clone()
    boxes_out[masks, :] = boxes_xyxy[best_dbox_idx[masks], :]
    return box_convert(boxes_out, "xyxy", "cxcywh"), labels_out


def reference_loss(anchors_cxcywh, ploc, plabel, gloc_cxcywh, glabel):
    """The reference loss: gloc are matched boxes (cx, cy, w, h) ``[N, 4, A]``; double argsort mining."""
    localisation, classification = reference_loss_parts(anchors_cxcywh, ploc, plabel, gloc_cxcywh, glabel)
    return localisation + classification


def reference_loss_parts(anchors_cxcywh, ploc, plabel, gloc_cxcywh, glabel):
    """The reference loss's two terms, each normalised and averaged as the reference does its sum."""
    dboxes = anchors_cxcywh.t().unsqueeze(0)
    gxy = 10.0 * (gloc_cxcywh[:, :2, :] - dboxes[:, :2, :]) / dboxes[:, 2:, :]
    gwh = 5.0 * (gloc_cxcywh[:, 2:, :] / dboxes[:, 2:, :]).log()
    vec_gd = torch.cat((gxy, gwh), dim=1)
    mask = glabel > 0
    pos_num = mask.sum(dim=1)
    sl1 = F.smooth_l1_loss(ploc, vec_gd, reduction="none").sum(dim=1)
    sl1 = (mask.float() * sl1).sum(dim=1)
    con = F.cross_entropy(plabel, glabel, reduction="none")
    con_neg = con.clone()
    con_neg[mask] = 0
    _, con_idx = con_neg.sort(dim=1, descending=True)
    _, con_rank = con_idx.sort(dim=1)
    neg_num = torch.clamp(3 * pos_num, max=mask.size(1)).unsqueeze(-1)
    neg_mask = con_rank < neg_num
    closs = (con * (mask.float() + neg_mask.float())).sum(dim=1)
    num_mask = (pos_num > 0).float()
    pos_num = pos_num.float().clamp(min=1e-6)
    return (sl1 * num_mask / pos_num).mean(dim=0), (closs * num_mask / pos_num).mean(dim=0)


def reference_decode(anchors_cxcywh, locs, confs, nms_threshold=0.5, max_output=200, max_num=200):
    """The reference's decode_batch: per image, per class, greedy Python NMS (IoU >= threshold suppressed)."""
    anchors = anchors_cxcywh.unsqueeze(0)
    bboxes = locs.permute(0, 2, 1).clone()
    scores = F.softmax(confs.permute(0, 2, 1), dim=-1)
    bboxes[:, :, :2] = 0.1 * bboxes[:, :, :2] * anchors[:, :, 2:] + anchors[:, :, :2]
    bboxes[:, :, 2:] = (0.2 * bboxes[:, :, 2:]).exp() * anchors[:, :, 2:]
    bboxes = box_convert(bboxes, "cxcywh", "xyxy")
    results = []
    for image_boxes, image_scores in zip(bboxes, scores):
        out_boxes, out_scores, out_labels = [], [], []
        for label in range(1, image_scores.shape[1]):
            score = image_scores[:, label]
            mask = score > 0.05
            boxes, score = image_boxes[mask], score[mask]
            if score.numel() == 0:
                continue
            order = score.argsort()[-max_num:]
            candidates = []
            while order.numel() > 0:
                best = order[-1].item()
                iou = box_iou(boxes[order], boxes[best].unsqueeze(0)).squeeze(1)
                order = order[iou < nms_threshold]
                candidates.append(best)
            out_boxes.append(boxes[candidates])
            out_scores.append(score[candidates])
            out_labels += [label] * len(candidates)
        if not out_boxes:
            results.append((torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)))
            continue
        boxes, scores_cat, labels = torch.cat(out_boxes), torch.cat(out_scores), torch.tensor(out_labels)
        keep = scores_cat.argsort()[-max_output:]
        results.append((boxes[keep], scores_cat[keep], labels[keep]))
    return results
