// Building the page's elements. Text is set as text (textContent), never parsed as HTML: names
// and gift names are what viewers typed.

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function giftText(gift) {
  return gift.quantity > 1 ? `${gift.giftName} \u00d7${gift.quantity}` : gift.giftName;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}
