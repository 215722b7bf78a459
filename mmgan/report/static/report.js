// mmgan report: the step sliders. Without scripts every step is simply shown, one after the other.
"use strict";
document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", () => {
  for (const slider of document.querySelectorAll(".slider")) {
    const input = slider.querySelector("input[type=range]");
    const output = slider.querySelector("output");
    const slides = Array.from(slider.querySelectorAll(".slide"));
    const show = () => {
      const index = Number(input.value);
      slides.forEach((slide, i) => slide.classList.toggle("current", i === index));
      const group = slides[index] && slides[index].querySelector(".group");
      output.textContent = group && group.dataset.step !== undefined ? "step " + group.dataset.step : "";
    };
    input.addEventListener("input", show);
    show();
  }
});
