// "1,024 × 768 px · 182 kB": an image's dimensions and file size, in words a person reads at a glance.
import { formatCount } from "./dom.js";

export function fileSize(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${Math.round(bytes / 1000)} kB`;
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

export function describeFile(image) {
  const parts = [];
  if (image.width && image.height) parts.push(`${formatCount(image.width)} × ${formatCount(image.height)} px`);
  if (Number.isFinite(image.size_bytes)) parts.push(fileSize(image.size_bytes));
  return parts.join(" · ");
}
